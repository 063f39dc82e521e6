package scalebench

// Seeding a backlog straight into etcd.
//
// Creating Services through kube-apiserver 1.37 is quadratic: on every creation the ClusterIP
// allocator counts the IPAddress objects it owns by listing all of them from its informer
// (ipallocator.(*Allocator).Used, called for a metric even when metrics are off), so 50,000
// Services take about 2.5 hours here. The benchmark measures the controller, not that, so large
// backlogs are written into etcd as the apiserver itself would have stored them:
//
//   - one Service, svc-00000, is created through the API and read back; every other Service is
//     a copy of it with its own name, UID, creation time, selector, ClusterIP and
//     healthCheckNodePort (so the managedFields, defaults and field order are the apiserver's
//     own);
//   - each ClusterIP gets the IPAddress object the allocator would have created, written before
//     the Services (by blocks, see seed), so the apiserver's IPAddress repair finds every
//     Service's address allocated;
//   - the node port bitmap (the RangeAllocation the apiserver keeps in etcd) gets every
//     healthCheckNodePort, so its port repair finds nothing to repair.
//
// All of it is encoded with the apiserver's storage encoding (protobuf) and keys; the apiserver
// sees the writes through its etcd watch like any other. The writes are paced (-seed-pace): at
// full speed the watch cache closes the watchers that fall behind, its own informers among them. seed then waits until a LIST through
// the API returns every Service and checks that the apiserver's repair loops complained about
// none of them (no Events).

import (
	"bytes"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	pbserializer "k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/scheme"
)

const (
	// The apiserver's storage keys (envtest leaves --etcd-prefix at /registry).
	servicesKey  = "/registry/services/specs/"
	ipAddressKey = "/registry/ipaddresses/"
	nodePortsKey = "/registry/ranges/servicenodeports"
	// What the apiserver's ClusterIP allocator labels its IPAddress objects with.
	ipAllocatorName = "ipallocator.k8s.io"
	// The node port range the benchmark's apiserver gets (--service-node-port-range).
	nodePortBase, nodePortLast = 1024, 65535
)

// storage encodes objects the way the apiserver stores them: protobuf in the storage version.
type storage struct{ codecs serializer.CodecFactory }

func (s storage) encode(obj runtime.Object, gv runtime.GroupVersioner) ([]byte, error) {
	ser := pbserializer.NewSerializer(scheme.Scheme, scheme.Scheme)
	return runtime.Encode(s.codecs.EncoderForVersion(ser, gv), obj)
}

func (s storage) decode(data []byte, into runtime.Object) error {
	ser := pbserializer.NewSerializer(scheme.Scheme, scheme.Scheme)
	_, _, err := s.codecs.DecoderToVersion(ser, corev1.SchemeGroupVersion).Decode(data, nil, into)
	return err
}

// seed creates Services 0..n-1: the first through the API, the rest in etcd.
func (cl *cluster) seed(n int) error {
	first, err := cl.cs.CoreV1().Services(benchNS).Create(ctx, service(0), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{cl.env.EtcdURL().String()}, DialTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer etcd.Close()
	st := storage{codecs: serializer.NewCodecFactory(scheme.Scheme)}

	// Addresses and ports that svc-00000 (and the kubernetes Service) already hold stay out of
	// the ones handed to the copies.
	taken := map[netip.Addr]bool{}
	for _, ip := range first.Spec.ClusterIPs {
		taken[netip.MustParseAddr(ip)] = true
	}
	prefix := netip.MustParsePrefix(serviceCIDRv6)
	next := prefix.Addr().Next() // the first address is the prefix's own
	nextIP := func() netip.Addr {
		for taken[next] || next == prefix.Addr() {
			next = next.Next()
		}
		ip := next
		next = next.Next()
		return ip
	}
	port := nodePortBase
	nextPort := func() int32 {
		if port == int(first.Spec.HealthCheckNodePort) {
			port++
		}
		port++
		return int32(port - 1)
	}

	services := make([]*corev1.Service, 0, n-1)
	for i := 1; i < n; i++ {
		s := first.DeepCopy()
		s.Name, s.UID, s.ResourceVersion, s.CreationTimestamp = name(i), uuid.NewUUID(), "", metav1.Now()
		s.Spec.Selector = map[string]string{"app": name(i)}
		ip := nextIP()
		if !prefix.Contains(ip) {
			return fmt.Errorf("%s holds fewer than %d Services", serviceCIDRv6, n)
		}
		s.Spec.ClusterIP, s.Spec.ClusterIPs = ip.String(), []string{ip.String()}
		if s.Spec.HealthCheckNodePort = nextPort(); s.Spec.HealthCheckNodePort > nodePortLast {
			return fmt.Errorf("the node port range holds fewer than %d Services", n)
		}
		services = append(services, s)
	}

	var ops []clientv3.Op
	put := func(key string, obj runtime.Object, gv runtime.GroupVersioner) error {
		data, err := st.encode(obj, gv)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(key, string(data)))
		if len(ops) == 100 { // etcd's default --max-txn-ops is 128
			// Paced: the apiserver's watch cache closes a watcher that falls behind (its own
			// informers included, and the repair loop then sees a stale IPAddress cache).
			time.Sleep(*seedPaceFlag)
			return flush(etcd, &ops)
		}
		return nil
	}
	// The repair loop reads IPAddresses and Services from two informers, which do not keep
	// etcd's order between them, and deletes an IPAddress whose Service it has not seen a
	// minute after the IPAddress' creation. So the objects go in by blocks: a block's
	// IPAddresses, a wait until they are served, then its Services, well inside the minute.
	if err := cl.seedNodePorts(etcd, st, services); err != nil {
		return err
	}
	const block = 10000
	for from := 0; from < len(services); from += block {
		part := services[from:min(from+block, len(services))]
		for _, s := range part {
			a := &networkingv1.IPAddress{
				ObjectMeta: metav1.ObjectMeta{Name: s.Spec.ClusterIP, UID: uuid.NewUUID(), CreationTimestamp: metav1.Now(),
					Labels: map[string]string{networkingv1.LabelIPAddressFamily: string(corev1.IPv6Protocol), networkingv1.LabelManagedBy: ipAllocatorName}},
				Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: s.Namespace, Name: s.Name}},
			}
			if err := put(ipAddressKey+a.Name, a, networkingv1.SchemeGroupVersion); err != nil {
				return err
			}
		}
		if err := flush(etcd, &ops); err != nil {
			return err
		}
		// svc-00000's and the seeded ones are the only IPv6 ClusterIPs.
		if err := cl.waitListed("IPAddresses", 1+from+len(part), func() (int, error) {
			l, err := cl.cs.NetworkingV1().IPAddresses().List(ctx, metav1.ListOptions{ResourceVersion: "0",
				LabelSelector: networkingv1.LabelManagedBy + "=" + ipAllocatorName + "," + networkingv1.LabelIPAddressFamily + "=IPv6"})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}); err != nil {
			return err
		}
		// The repair loop's informer trails the watch cache; nothing shows when it has caught
		// up, so the wait is generous, and the check at the end (no complaint from the repair
		// loop) is what proves it was long enough.
		time.Sleep(5 * time.Second)
		for _, s := range part {
			if err := put(servicesKey+s.Namespace+"/"+s.Name, s, corev1.SchemeGroupVersion); err != nil {
				return err
			}
		}
		if err := flush(etcd, &ops); err != nil {
			return err
		}
	}
	return cl.checkSeeded(n)
}

func flush(etcd *clientv3.Client, ops *[]clientv3.Op) error {
	if len(*ops) == 0 {
		return nil
	}
	_, err := etcd.Txn(ctx).Then(*ops...).Commit()
	*ops = (*ops)[:0]
	return err
}

// seedNodePorts adds the Services' healthCheckNodePorts to the apiserver's node port bitmap,
// keeping the bits already set, in one compare-and-swap.
func (cl *cluster) seedNodePorts(etcd *clientv3.Client, st storage, services []*corev1.Service) error {
	resp, err := etcd.Get(ctx, nodePortsKey)
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("no node port bitmap at %s (did svc-00000 get a healthCheckNodePort?)", nodePortsKey)
	}
	var r corev1.RangeAllocation
	if err := st.decode(resp.Kvs[0].Value, &r); err != nil {
		return fmt.Errorf("decoding the node port bitmap: %w", err)
	}
	if want := fmt.Sprintf("%d-%d", nodePortBase, nodePortLast); r.Range != want {
		return fmt.Errorf("node port range %q, want %q", r.Range, want)
	}
	bits := new(big.Int).SetBytes(r.Data)
	for _, s := range services {
		bits.SetBit(bits, int(s.Spec.HealthCheckNodePort)-nodePortBase, 1)
	}
	r.Data, r.ResourceVersion = bits.Bytes(), ""
	data, err := st.encode(&r, corev1.SchemeGroupVersion)
	if err != nil {
		return err
	}
	k := resp.Kvs[0]
	txn, err := etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(nodePortsKey), "=", k.ModRevision)).
		Then(clientv3.OpPut(nodePortsKey, string(data))).Commit()
	if err != nil {
		return err
	}
	if !txn.Succeeded {
		return fmt.Errorf("the node port bitmap changed while it was being seeded")
	}
	return nil
}

// waitListed waits until count (a LIST through the API) reaches at least n.
func (cl *cluster) waitListed(what string, n int, count func() (int, error)) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := count()
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after seeding, the API lists %d %s, want %d", got, what, n)
		}
		time.Sleep(time.Second)
	}
}

// checkSeeded waits until the API lists every Service, then checks that the apiserver's
// repair loops found nothing to say about them.
func (cl *cluster) checkSeeded(n int) error {
	if err := cl.waitListed("Services", n, func() (int, error) {
		l, err := cl.cs.CoreV1().Services(benchNS).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}); err != nil {
		return err
	}
	// The IPAddress repair runs on every Service event; give the last ones a moment.
	time.Sleep(5 * time.Second)
	// Their Events about Services land in the Services' namespace, about IPAddresses in default.
	events, err := cl.cs.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var complaints []string
	for _, e := range events.Items {
		// The apiserver may repair its own kubernetes Service while it boots; that is not ours.
		ours := e.InvolvedObject.Namespace == benchNS || e.InvolvedObject.Kind == "IPAddress"
		if e.Type == corev1.EventTypeWarning && ours {
			complaints = append(complaints, e.InvolvedObject.Name+": "+e.Reason+" "+e.Message)
		}
	}
	if len(complaints) > 0 {
		// The usual cause: watchers the watch cache closed for falling behind (-seed-pace).
		detail := ""
		if body, err := cl.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err == nil {
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, "apiserver_terminated_watchers_total") {
					detail += "\n" + l
				}
			}
		}
		return fmt.Errorf("the apiserver complained about %d seeded objects, e.g. %s%s", len(complaints), complaints[0], detail)
	}
	// One seeded Service read back whole must be svc-00000 but for what makes it another.
	got, err := cl.cs.CoreV1().Services(benchNS).Get(ctx, name(n-1), metav1.GetOptions{})
	if err != nil {
		return err
	}
	want, err := cl.cs.CoreV1().Services(benchNS).Get(ctx, name(0), metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d := diffSeeded(want, got); d != "" {
		return fmt.Errorf("seeded %s differs from %s: %s", got.Name, want.Name, d)
	}
	return nil
}

// diffSeeded compares two Services' JSON with the fields seeding sets per Service blanked.
func diffSeeded(a, b *corev1.Service) string {
	norm := func(s *corev1.Service) []byte {
		s = s.DeepCopy()
		s.Name, s.UID, s.ResourceVersion = "", types.UID(""), ""
		s.Spec.Selector, s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.HealthCheckNodePort = nil, "", nil, 0
		s.CreationTimestamp = metav1.Time{}
		data, _ := runtime.Encode(scheme.Codecs.LegacyCodec(corev1.SchemeGroupVersion), s)
		return data
	}
	x, y := norm(a), norm(b)
	if bytes.Equal(x, y) {
		return ""
	}
	return "\n" + string(x) + "\n" + string(y)
}

// seeded tells whether a size's backlog is written into etcd (-seed-from).
func seeded(n int) bool { return *seedFromFlag > 0 && n >= *seedFromFlag }
