package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fairlead-lb/fairlead/controllers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

var (
	ctx  = context.Background()
	k8s  client.Client
	kcp  *controlplane.Env
	moto *awsapi.Moto
)

const cluster = "test-cluster"

// One kube-apiserver and one moto serve the package's tests, which run one after another (they
// set the AWS environment with t.Setenv) and each start their own controller manager.
func TestMain(m *testing.M) {
	out := io.Discard
	if os.Getenv("FAIRLEAD_TEST_LOG") != "" {
		out = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(out), zap.UseDevMode(true)))
	controlplane.Main(m, controlplane.Options{}, func(cp *controlplane.ControlPlane) (err error) {
		kcp, k8s = cp.Env, cp.Client
		if moto, err = awsapi.Launch(); err != nil {
			return err
		}
		cp.Cleanup(moto.Stop)
		return nil
	})
}

// env is a reset moto with a VPC set up as a cluster's, a fault proxy in front of it, and
// Nodes in the apiserver backed by instances in moto.
type env struct {
	proxy  *awsapi.Proxy
	direct *fairaws.Clients // the test's own view of AWS, bypassing the proxy
	vpc    string
	nodeSG string
	ns     string
	nodes  []testNode
}

type testNode struct {
	name, instanceID, eni string
	privateIP             netip.Addr
}

var counter atomic.Int32

func newEnv(t *testing.T, nodes int) *env {
	t.Helper()
	awsapi.Env(t)
	moto.Reset(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moto output (access log left out):\n%s", moto.Output())
		}
	})
	e := &env{proxy: awsapi.NewProxy(t, moto.URL)}
	var err error
	if e.direct, err = fairaws.NewClients(ctx, fairaws.Config{Endpoint: moto.URL}); err != nil {
		t.Fatal(err)
	}
	vpcs, err := e.direct.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no default VPC: %v", err)
	}
	e.vpc = aws.ToString(vpcs.Vpcs[0].VpcId)
	subnets, err := e.direct.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) < 2 {
		t.Fatalf("moto's default VPC has fewer than 2 subnets: %v", err)
	}
	var pub []string
	for _, s := range subnets.Subnets[:2] {
		pub = append(pub, aws.ToString(s.SubnetId))
	}
	if _, err := e.direct.EC2.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: pub, Tags: []ec2types.Tag{{Key: aws.String("kubernetes.io/role/elb"), Value: aws.String("1")}},
	}); err != nil {
		t.Fatal(err)
	}
	sg, err := e.direct.EC2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: aws.String("nodes"), Description: aws.String("the cluster's nodes"), VpcId: aws.String(e.vpc),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.nodeSG = aws.ToString(sg.GroupId)
	images, err := e.direct.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	run, err := e.direct.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: images.Images[0].ImageId, MinCount: aws.Int32(int32(nodes)), MaxCount: aws.Int32(int32(nodes)),
		SubnetId: subnets.Subnets[0].SubnetId, InstanceType: ec2types.InstanceTypeT3Micro,
	})
	if err != nil {
		t.Fatal(err)
	}
	id := counter.Add(1)
	for i, inst := range run.Instances {
		n := testNode{
			name:       fmt.Sprintf("t%d-node%d", id, i+1),
			instanceID: aws.ToString(inst.InstanceId),
			eni:        aws.ToString(inst.NetworkInterfaces[0].NetworkInterfaceId),
			privateIP:  netip.MustParseAddr(aws.ToString(inst.PrivateIpAddress)),
		}
		e.nodes = append(e.nodes, n)
	}
	for _, n := range e.nodes {
		createNode(t, n)
	}
	e.ns = fmt.Sprintf("t%d", id)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil {
		t.Fatal(err)
	}
	// Runs last, once the test's controllers have stopped: Services a failed test left must not
	// be reconciled by the next test's controller (into the next test's moto).
	t.Cleanup(func() { e.forgetServices(t) })
	return e
}

// forgetServices deletes the test's Services without waiting for a controller.
func (e *env) forgetServices(t *testing.T) {
	var list corev1.ServiceList
	if err := k8s.List(context.Background(), &list, client.InNamespace(e.ns)); err != nil {
		t.Errorf("listing leftover Services: %v", err)
		return
	}
	for i := range list.Items {
		s := &list.Items[i]
		if len(s.Finalizers) > 0 {
			base := s.DeepCopy()
			s.Finalizers = nil
			_ = k8s.Patch(context.Background(), s, client.MergeFrom(base))
		}
		_ = k8s.Delete(context.Background(), s)
	}
}

// createNode registers a Node as the AWS cloud provider would: providerID naming its instance,
// the instance's private address as InternalIP, Ready.
func createNode(t *testing.T, n testNode) {
	t.Helper()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name},
		Spec:       corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + n.instanceID},
	}
	if err := k8s.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}})
	})
	node.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.privateIP.String()}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if err := k8s.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
}

func setNodeReady(t *testing.T, name string, ready bool) {
	t.Helper()
	var n corev1.Node
	if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status = st
		}
	}
	if err := k8s.Status().Update(ctx, &n); err != nil {
		t.Fatal(err)
	}
}

// controller is one fairlead-controller (a manager with Setup) running in the test process.
type controller struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs a controller manager whose AWS clients talk through the proxy: a new one models
// a restarted controller, knowing only what it finds in the API and in AWS.
func (e *env) start(t *testing.T, nlb, eip bool) *controller {
	t.Helper()
	mgr, err := ctrl.NewManager(kcp.Config, ctrl.Options{
		Scheme:                 kcp.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests run several managers in one process, one after another.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = controllers.Setup(mgr, controllers.Options{DefaultClass: true, PoolStatusInterval: 100 * time.Millisecond,
		AWS: &controllers.AWSOptions{
			// Short backoffs so that retried faults do not slow the test; the SDK's retryer and
			// its attempt count are the production ones.
			Config:      fairaws.Config{Endpoint: e.proxy.URL, MaxBackoff: 20 * time.Millisecond},
			ClusterName: cluster,
			NLB:         nlb,
			NLBOptions:  fairaws.NLBOptions{VPCID: e.vpc, NodeSecurityGroupID: e.nodeSG},
			ElasticIPs:  eip,
			// Drift repair is not under test; keep it out of the call counts.
			Resync:           time.Hour,
			CollectorBackoff: 100 * time.Millisecond,
		}})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	c := &controller{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *controller) stop() {
	c.cancel()
	<-c.done
}

type svcOpt func(*corev1.Service)

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP})
		}
	}
}

func withClass(c string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c }
}

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func (e *env) service(t *testing.T, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
		},
	}
	withPorts(80)(s)
	for _, o := range opts {
		o(s)
	}
	if err := k8s.Create(ctx, s); err != nil {
		t.Fatalf("creating Service %s: %v", name, err)
	}
	return s
}

func (e *env) getSvc(t *testing.T, name string) *corev1.Service {
	t.Helper()
	var s corev1.Service
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: name}, &s); err != nil {
		t.Fatalf("getting Service %s: %v", name, err)
	}
	return &s
}

func (e *env) patchSvc(t *testing.T, name string, mutate func(*corev1.Service)) {
	t.Helper()
	s := e.getSvc(t, name)
	base := s.DeepCopy()
	mutate(s)
	if err := k8s.Patch(ctx, s, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) deleteSvc(t *testing.T, name string) {
	t.Helper()
	if err := k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, time.Minute, "Service "+name+" to be gone", func(context.Context) error {
		var s corev1.Service
		err := k8s.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: name}, &s)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("Service %s still exists (finalizers %v): %v", name, s.Finalizers, err)
	})
}

// hostname waits for the Service's status to show a hostname and returns it.
func (e *env) hostname(t *testing.T, name string) string {
	t.Helper()
	var host string
	// Generous: after a failure, the work queue's backoff (doubling from 5ms) spaces retries.
	kit.Eventually(t, 2*time.Minute, "a hostname for Service "+name, func(context.Context) error {
		s := e.getSvc(t, name)
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.Hostname != "" {
				host = in.Hostname
				return nil
			}
		}
		return fmt.Errorf("Service %s: no hostname in status yet (%+v, conditions %+v)", name, s.Status.LoadBalancer, s.Status.Conditions)
	})
	return host
}

// event waits for an Event with reason on the Service and returns its note.
func (e *env) event(t *testing.T, name, reason string) string {
	t.Helper()
	var note string
	kit.Eventually(t, time.Minute, "a "+reason+" Event about Service "+name, func(context.Context) error {
		var list eventsv1.EventList
		if err := k8s.List(ctx, &list, client.InNamespace(e.ns)); err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.Regarding.Name == name && ev.Reason == reason {
				note = ev.Note
				return nil
			}
			seen = append(seen, ev.Regarding.Name+":"+ev.Reason)
		}
		return fmt.Errorf("no %s event for %s (events: %v)", reason, name, seen)
	})
	return note
}

// inventory is everything in moto that Fairlead could have created or tagged, read without
// the proxy. Each list is sorted.
type inventory struct {
	LoadBalancers  []string // name
	Listeners      []string // lb-name port/protocol
	TargetGroups   []string // name
	Targets        []string // tg-name instance:port
	SecurityGroups []string // name (the VPC's default and the nodes' group left out)
	NodeRules      []string // rules in the nodes' group: proto port
	ElasticIPs     []string // ip service-tag
}

func (i inventory) empty() bool {
	return len(i.LoadBalancers)+len(i.Listeners)+len(i.TargetGroups)+len(i.Targets)+len(i.SecurityGroups)+len(i.NodeRules)+len(i.ElasticIPs) == 0
}

func (e *env) inventory(t *testing.T) inventory {
	t.Helper()
	var inv inventory
	lbs, err := e.direct.ELBv2.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lbs.LoadBalancers {
		name := aws.ToString(l.LoadBalancerName)
		inv.LoadBalancers = append(inv.LoadBalancers, name)
		ls, err := e.direct.ELBv2.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: l.LoadBalancerArn})
		if gone(err) {
			continue // deleted by the controller since it was listed
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, li := range ls.Listeners {
			inv.Listeners = append(inv.Listeners, fmt.Sprintf("%s %d/%s", name, aws.ToInt32(li.Port), li.Protocol))
		}
	}
	tgs, err := e.direct.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range tgs.TargetGroups {
		name := aws.ToString(g.TargetGroupName)
		inv.TargetGroups = append(inv.TargetGroups, name)
		th, err := e.direct.ELBv2.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn})
		if gone(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range th.TargetHealthDescriptions {
			inv.Targets = append(inv.Targets, fmt.Sprintf("%s %s:%d", name, aws.ToString(d.Target.Id), aws.ToInt32(d.Target.Port)))
		}
	}
	sgs, err := e.direct.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range sgs.SecurityGroups {
		switch aws.ToString(g.GroupName) {
		case "default":
		case "nodes":
			for _, p := range g.IpPermissions {
				inv.NodeRules = append(inv.NodeRules, fmt.Sprintf("%s %d", aws.ToString(p.IpProtocol), aws.ToInt32(p.FromPort)))
			}
		default:
			inv.SecurityGroups = append(inv.SecurityGroups, aws.ToString(g.GroupName))
		}
	}
	addrs, err := e.direct.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs.Addresses {
		svc := ""
		for _, tg := range a.Tags {
			if aws.ToString(tg.Key) == fairaws.TagService {
				svc = aws.ToString(tg.Value)
			}
		}
		inv.ElasticIPs = append(inv.ElasticIPs, strings.TrimSpace(aws.ToString(a.PublicIp)+" "+svc))
	}
	for _, s := range []*[]string{&inv.LoadBalancers, &inv.Listeners, &inv.TargetGroups, &inv.Targets, &inv.SecurityGroups, &inv.NodeRules, &inv.ElasticIPs} {
		slices.Sort(*s)
	}
	return inv
}

// gone reports an error saying the resource was deleted meanwhile: the inventory is read while
// the controller works.
func gone(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "TargetGroupNotFound" || ae.ErrorCode() == "LoadBalancerNotFound")
}

// waitInventory waits until check accepts the inventory.
func (e *env) waitInventory(t *testing.T, check func(inventory) error) inventory {
	t.Helper()
	var inv inventory
	kit.Eventually(t, time.Minute, "the inventory in moto", func(context.Context) error {
		inv = e.inventory(t)
		return check(inv)
	})
	return inv
}

// assertClean fails unless nothing Fairlead creates is left in moto.
func (e *env) assertClean(t *testing.T) {
	t.Helper()
	e.waitInventory(t, func(inv inventory) error {
		if !inv.empty() {
			return fmt.Errorf("left behind in AWS: %+v", inv)
		}
		return nil
	})
}
