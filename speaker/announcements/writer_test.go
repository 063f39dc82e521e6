package announcements_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/announcements"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

var (
	ctx = context.Background()
	kcp *controlplane.Env
)

func TestMain(m *testing.M) {
	controlplane.Main(m, controlplane.Options{}, func(cp *controlplane.ControlPlane) error {
		kcp = cp.Env
		return nil
	})
}

func service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if err := kcp.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

func entry(ip, node, proto string) v1alpha1.Announcement {
	return v1alpha1.Announcement{IP: ip, Node: node, Protocol: proto}
}

// only keeps have's entries that are not owner's, then adds owner's want: how each writer
// edits (its own entries, nobody else's).
func only(owner string, want ...v1alpha1.Announcement) func([]v1alpha1.Announcement) []v1alpha1.Announcement {
	return func(have []v1alpha1.Announcement) []v1alpha1.Announcement {
		var out []v1alpha1.Announcement
		for _, a := range have {
			if a.Node+"/"+a.Protocol != owner {
				out = append(out, a)
			}
		}
		return append(out, want...)
	}
}

func get(t *testing.T, k types.NamespacedName) (*v1alpha1.ServiceAnnouncement, bool) {
	t.Helper()
	var sa v1alpha1.ServiceAnnouncement
	if err := kcp.Client.Get(ctx, k, &sa); err != nil {
		return nil, false
	}
	return &sa, true
}

// Many writers, each owning its own entries (a node and a protocol), updating one
// ServiceAnnouncement at once from separate Writers: every writer's last entries are there,
// in canonical order; nobody's are lost to a conflict.
func TestConcurrentWritersKeepEachOthersEntries(t *testing.T) {
	svc := service(t, "busy")
	k := types.NamespacedName{Namespace: "default", Name: "busy"}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 6 {
		w, err := announcements.New(kcp.Config)
		if err != nil {
			t.Fatal(err)
		}
		node, proto := fmt.Sprintf("node%d", i/2), []string{v1alpha1.ProtocolBGP, v1alpha1.ProtocolARP}[i%2]
		wg.Go(func() {
			for round := range 5 {
				ip := fmt.Sprintf("198.51.100.%d", round+1)
				if _, _, err := w.Update(ctx, k, svc, only(node+"/"+proto, entry(ip, node, proto))); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sa, ok := get(t, k)
	if !ok {
		t.Fatal("no ServiceAnnouncement")
	}
	var got []string
	for _, a := range sa.Status.Announcements {
		got = append(got, a.IP+"/"+a.Protocol+"/"+a.Node)
	}
	want := "198.51.100.5/ARP/node0 198.51.100.5/ARP/node1 198.51.100.5/ARP/node2 198.51.100.5/BGP/node0 198.51.100.5/BGP/node1 198.51.100.5/BGP/node2"
	if strings.Join(got, " ") != want {
		t.Errorf("entries %v\nwant %s", got, want)
	}
	if len(sa.OwnerReferences) != 1 || sa.OwnerReferences[0].UID != svc.UID {
		t.Errorf("owner references %+v, want the Service", sa.OwnerReferences)
	}
}

// Creation needs a Service and entries; an unchanged list is not written; removing needs no
// Service; a ServiceAnnouncement of another Service of the same name is refused.
func TestUpdateCreatesOnlyWhatIsNeeded(t *testing.T) {
	w, err := announcements.New(kcp.Config)
	if err != nil {
		t.Fatal(err)
	}
	svc := service(t, "web")
	k := types.NamespacedName{Namespace: "default", Name: "web"}
	mine := only("n1/BGP", entry("198.51.100.9", "n1", v1alpha1.ProtocolBGP))

	if _, _, err := w.Update(ctx, k, nil, mine); err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, k); ok {
		t.Error("created without a Service to own it")
	}
	if _, _, err := w.Update(ctx, k, svc, only("n1/BGP")); err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, k); ok {
		t.Error("created with no entries")
	}
	if _, after, err := w.Update(ctx, k, svc, mine); err != nil || len(after) != 1 {
		t.Fatalf("Update = %v, %v", after, err)
	}
	sa, _ := get(t, k)
	before, after, err := w.Update(ctx, k, svc, mine)
	if again, _ := get(t, k); err != nil || again.ResourceVersion != sa.ResourceVersion || !announcements.Equal(before, after) {
		t.Errorf("an unchanged list was written (resourceVersion %s → %s, err %v)", sa.ResourceVersion, again.ResourceVersion, err)
	}
	if _, after, err := w.Update(ctx, k, nil, only("n1/BGP")); err != nil || len(after) != 0 {
		t.Errorf("removing without a Service: %v, %v", after, err)
	}

	impostor := svc.DeepCopy()
	impostor.UID = "00000000-0000-0000-0000-000000000000"
	if _, _, err := w.Update(ctx, k, impostor, mine); err == nil || !strings.Contains(err.Error(), "owned by another Service") {
		t.Errorf("writing into another Service's ServiceAnnouncement: err %v", err)
	}
}

// requests counts a Writer's requests as "VERB code", in order.
type requests struct {
	mu  sync.Mutex
	log []string
}

func (r *requests) RoundTrip(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if err == nil {
			r.mu.Lock()
			r.log = append(r.log, fmt.Sprintf("%s %d", req.Method, resp.StatusCode))
			r.mu.Unlock()
		}
		return resp, err
	})
}

// take returns the requests made since the last take.
func (r *requests) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.log, ", ")
	r.log = nil
	return s
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func entries(t *testing.T, k types.NamespacedName) string {
	t.Helper()
	sa, ok := get(t, k)
	if !ok {
		return "none"
	}
	var s []string
	for _, a := range sa.Status.Announcements {
		s = append(s, a.IP+"/"+a.Protocol+"/"+a.Node)
	}
	return strings.Join(s, " ")
}

// A Writer that alone writes a ServiceAnnouncement spends one request per change (it writes on
// the copy it last wrote); what others wrote meanwhile, a removal of its own entries included,
// is read and kept; a ServiceAnnouncement replaced by one of a new Service of the same name is
// read, not refused.
func TestUpdateWritesWithoutReadingFirst(t *testing.T) {
	var reqs requests
	cfg := rest.CopyConfig(kcp.Config)
	cfg.Wrap(reqs.RoundTrip)
	w, err := announcements.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	other, err := announcements.New(kcp.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.List(ctx); err != nil { // the client's discovery of the API group, out of the count
		t.Fatal(err)
	}
	reqs.take()
	svc := service(t, "alone")
	k := types.NamespacedName{Namespace: "default", Name: "alone"}
	step := func(what, wantReqs, wantEntries string, owner *corev1.Service, edit func([]v1alpha1.Announcement) []v1alpha1.Announcement) {
		t.Helper()
		if _, _, err := w.Update(ctx, k, owner, edit); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := reqs.take(); got != wantReqs {
			t.Errorf("%s: requests %q, want %q", what, got, wantReqs)
		}
		if got := entries(t, k); got != wantEntries {
			t.Errorf("%s: entries %q, want %q", what, got, wantEntries)
		}
	}
	step("new address", "POST 201", "198.51.100.1/ARP/n1", svc, only("n1/ARP", entry("198.51.100.1", "n1", v1alpha1.ProtocolARP)))
	step("changed address", "PUT 200", "198.51.100.2/ARP/n1", svc, only("n1/ARP", entry("198.51.100.2", "n1", v1alpha1.ProtocolARP)))

	if _, _, err := other.Update(ctx, k, svc, only("n2/BGP", entry("198.51.100.2", "n2", v1alpha1.ProtocolBGP))); err != nil {
		t.Fatal(err)
	}
	step("after another writer", "PUT 409, GET 200, PUT 200", "198.51.100.2/BGP/n2 198.51.100.3/ARP/n1", svc,
		only("n1/ARP", entry("198.51.100.3", "n1", v1alpha1.ProtocolARP)))

	// A reaper elsewhere removes n1's entry: n1 asking for what it last wrote must put it back,
	// though it is unchanged from the copy n1 holds.
	if _, _, err := other.Update(ctx, k, nil, only("n1/ARP")); err != nil {
		t.Fatal(err)
	}
	step("after a reaper", "GET 200, PUT 200", "198.51.100.2/BGP/n2 198.51.100.3/ARP/n1", svc,
		only("n1/ARP", entry("198.51.100.3", "n1", v1alpha1.ProtocolARP)))

	// The Service is replaced by another of the same name, and its ServiceAnnouncement by one
	// that the new Service owns.
	if err := kcp.Client.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	sa, _ := get(t, k)
	if err := kcp.Client.Delete(ctx, sa); err != nil {
		t.Fatal(err)
	}
	svc2 := service(t, "alone")
	if _, _, err := other.Update(ctx, k, svc2, only("n2/BGP", entry("198.51.100.4", "n2", v1alpha1.ProtocolBGP))); err != nil {
		t.Fatal(err)
	}
	step("new Service of the same name", "GET 200, PUT 200", "198.51.100.4/ARP/n1 198.51.100.4/BGP/n2", svc2,
		only("n1/ARP", entry("198.51.100.4", "n1", v1alpha1.ProtocolARP)))

	// What the Writer keeps is bounded by the Services its callers still write for: a copy
	// forgotten (the Service gone) costs a read again; removing without a Service keeps none.
	w.Forget(k)
	if n := w.Kept(); n != 0 {
		t.Errorf("%d copies kept after Forget", n)
	}
	step("after Forget", "POST 409, GET 200, PUT 200", "198.51.100.4/BGP/n2 198.51.100.5/ARP/n1", svc2,
		only("n1/ARP", entry("198.51.100.5", "n1", v1alpha1.ProtocolARP)))
	step("removing without a Service", "PUT 200", "198.51.100.4/BGP/n2", nil, only("n1/ARP"))
	if n := w.Kept(); n != 0 {
		t.Errorf("%d copies kept after removing without a Service", n)
	}
}
