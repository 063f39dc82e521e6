package eip_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/speaker/eip"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// k8s and kcp are TestElasticIPFollowsElection's control plane: it is the one test here that
// needs one (the plan's tests are pure, and run in the fast lane).
var (
	ctx = context.Background()
	k8s client.Client
	kcp *controlplane.Env
)

const cluster = "test-cluster"

func TestMain(m *testing.M) {
	out := io.Discard
	if os.Getenv("FAIRLEAD_TEST_LOG") != "" {
		out = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(out), zap.UseDevMode(true)))
	os.Exit(m.Run())
}

// awsClients builds clients for an emulator only: the endpoint must be on 127.0.0.1 and the
// credentials the dummy ones awsapi.Env puts in the environment, so that no test of the
// speaker ever reaches AWS itself.
func awsClients(t *testing.T, endpoint string) *fairaws.Clients {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("refusing AWS endpoint %q: tests talk to moto on 127.0.0.1 only", endpoint)
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") != "testing" || os.Getenv("AWS_EC2_METADATA_DISABLED") != "true" {
		t.Fatalf("refusing to start without the emulator's credentials in the environment (awsapi.Env)")
	}
	c, err := fairaws.NewClients(ctx, fairaws.Config{Endpoint: endpoint, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type host struct {
	node, instanceID, eni string
	privateIP             netip.Addr
}

// The Elastic IP of a Service follows the election: the owner's speaker associates it with its
// own interface; when the owner goes NotReady, and when the next one is excluded by label,
// the address moves to the next owner; deleting the Service releases it.
func TestElasticIPFollowsElection(t *testing.T) {
	awsapi.Env(t)
	kcp = controlplane.StartForTest(t, controlplane.Options{})
	k8s = kcp.Client
	moto := awsapi.StartMoto(t)
	proxy := awsapi.NewProxy(t, moto.URL)
	direct := awsClients(t, moto.URL)

	// Three instances; their Nodes carry the instance IDs and private addresses, as the AWS
	// cloud provider sets them.
	images, err := direct.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	run, err := direct.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: images.Images[0].ImageId, MinCount: aws.Int32(3), MaxCount: aws.Int32(3), InstanceType: ec2types.InstanceTypeT3Micro,
	})
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]host{}
	var names []string
	for i, inst := range run.Instances {
		h := host{node: fmt.Sprintf("eip-node%d", i+1), instanceID: aws.ToString(inst.InstanceId),
			eni: aws.ToString(inst.NetworkInterfaces[0].NetworkInterfaceId), privateIP: netip.MustParseAddr(aws.ToString(inst.PrivateIpAddress))}
		hosts[h.node] = h
		names = append(names, h.node)
		createNode(t, h)
	}

	// The controller, giving the Service its Elastic IP.
	startController(t, proxy.URL)
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "eips"},
		Spec: v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{}}}}
	if err := k8s.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pool) })
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: map[string]string{v1alpha1.AnnotationPool: "eips"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if err := k8s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	var ip netip.Addr
	kit.Eventually(t, time.Minute, "an Elastic IP in the status of shop/web", func(context.Context) error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ip, err = netip.ParseAddr(in.IP)
			return err
		}
		return fmt.Errorf("no Elastic IP in status yet: %+v", svc.Status.Conditions)
	})

	// A speaker per node, each with its own informers and AWS clients, as on three nodes.
	for _, n := range names {
		startSpeaker(t, n, proxy.URL)
	}

	where := func(want host) {
		t.Helper()
		kit.Eventually(t, time.Minute, fmt.Sprintf("the Elastic IP on %s's interface %s", want.node, want.eni), func(context.Context) error {
			out, err := direct.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{PublicIps: []string{ip.String()}})
			if err != nil {
				return err
			}
			if len(out.Addresses) != 1 {
				return fmt.Errorf("DescribeAddresses(%s): %d addresses", ip, len(out.Addresses))
			}
			a := out.Addresses[0]
			// AWS also reports the instance the interface is attached to (InstanceId,
			// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Address.html); moto
			// 5.2.1 leaves it empty for an association made by interface, so the interface
			// (the instance's primary one) and private address identify the node here.
			if aws.ToString(a.NetworkInterfaceId) != want.eni || aws.ToString(a.PrivateIpAddress) != want.privateIP.String() {
				return fmt.Errorf("%s is associated with %s/%s, want %s's %s/%s", ip, aws.ToString(a.NetworkInterfaceId),
					aws.ToString(a.PrivateIpAddress), want.node, want.eni, want.privateIP)
			}
			return nil
		})
	}
	owner, _ := election.Owner(ip.String(), names)
	where(hosts[owner])

	// The owner goes NotReady: the next in rank takes the address.
	setReady(t, owner, false)
	rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == owner })
	second, _ := election.Owner(ip.String(), rest)
	where(hosts[second])
	// AWS refuses to move an associated address without AllowReassociation
	// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AssociateAddress.html);
	// moto 5.2.1 moves it either way, so check the move's request itself.
	var move *awsapi.Call
	for _, c := range proxy.Calls() {
		if c.Action == "AssociateAddress" && c.Params.Get("NetworkInterfaceId") == hosts[second].eni {
			move = &c
		}
	}
	if move == nil || move.Params.Get("AllowReassociation") != "true" || move.Params.Get("PrivateIpAddress") != hosts[second].privateIP.String() {
		t.Fatalf("failover AssociateAddress request: %+v, want AllowReassociation=true to %s", move, hosts[second].privateIP)
	}

	// The new owner is excluded from load balancers by label: the last node takes it.
	var n corev1.Node
	if err := k8s.Get(ctx, types.NamespacedName{Name: second}, &n); err != nil {
		t.Fatal(err)
	}
	n.Labels = map[string]string{corev1.LabelNodeExcludeBalancers: "true"}
	if err := k8s.Update(ctx, &n); err != nil {
		t.Fatal(err)
	}
	third := slices.DeleteFunc(rest, func(n string) bool { return n == second })[0]
	where(hosts[third])

	// The first owner is back: rendezvous hashing gives the address back to it.
	setReady(t, owner, true)
	where(hosts[owner])

	// Each takeover is on the Service as an Event from the new owner.
	kit.Eventually(t, 30*time.Second, "an ElasticIPAssociated Event from each owner in turn", func(context.Context) error {
		var evs corev1.EventList
		if err := k8s.List(ctx, &evs, client.InNamespace("shop")); err != nil {
			return err
		}
		from := map[string]bool{}
		for _, ev := range evs.Items {
			if ev.Reason == "ElasticIPAssociated" && ev.InvolvedObject.Name == "web" {
				from[ev.Source.Host] = true
			}
		}
		for _, n := range []string{owner, second, third} {
			if !from[n] {
				return fmt.Errorf("no ElasticIPAssociated Event from %s (have %v)", n, from)
			}
		}
		return nil
	})

	// Deleting the Service disassociates and releases the address.
	if err := k8s.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, time.Minute, "the Elastic IP released after the Service's deletion", func(context.Context) error {
		out, err := direct.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
		if err != nil {
			return err
		}
		if len(out.Addresses) != 0 {
			return fmt.Errorf("Elastic IPs left: %+v", out.Addresses)
		}
		return nil
	})
}

func startController(t *testing.T, endpoint string) {
	t.Helper()
	mgr, err := ctrl.NewManager(kcp.Config, ctrl.Options{
		Scheme: kcp.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	awsClients(t, endpoint) // the same guard as the speakers'
	if err := controllers.Setup(mgr, controllers.Options{DefaultClass: true, AWS: &controllers.AWSOptions{
		Config: fairaws.Config{Endpoint: endpoint, MaxBackoff: 20 * time.Millisecond}, ClusterName: cluster, ElasticIPs: true,
	}}); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Start(mctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// startSpeaker runs the eip loop for one node the way fairlead-speaker wires it: shared
// informers feed the snapshot and kick the loop.
func startSpeaker(t *testing.T, node, endpoint string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(kcp.Config)
	if err != nil {
		t.Fatal(err)
	}
	mover, err := fairaws.NewAssociator(awsClients(t, endpoint), cluster)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(kcp.Config)
	if err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	src, err := snapshot.NewSource(snapshot.SourceOptions{Informers: f, Dynamic: dyn, DefaultClass: true})
	if err != nil {
		t.Fatal(err)
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	loop := eip.New(eip.Options{
		Node: node, Mover: mover, Log: testr.New(t).WithValues("speaker", node),
		Recorder:  broadcaster.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "fairlead-speaker", Host: node}),
		Snapshots: src,
	})
	sctx, cancel := context.WithCancel(ctx)
	f.Start(sctx.Done())
	src.Start(sctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = loop.Run(sctx)
	}()
	t.Cleanup(func() { cancel(); <-done; f.Shutdown() })
}

func createNode(t *testing.T, h host) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.node}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + h.instanceID}}
	if err := k8s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.node}})
	})
	n.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.privateIP.String()}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
	}
	if err := k8s.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func setReady(t *testing.T, name string, ready bool) {
	t.Helper()
	var n corev1.Node
	if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	if err := k8s.Status().Update(ctx, &n); err != nil {
		t.Fatal(err)
	}
}
