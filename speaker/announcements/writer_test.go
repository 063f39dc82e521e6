package announcements_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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
