package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/awsnodes"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

// TestAWSNLB: with the aws-nlb backend, fairlead-ccm gives an unclassed Service a Network Load
// Balancer in moto (the AWS emulator; no real AWS account is involved) whose DNS name lands in
// status.loadBalancer.ingress, targets the nodes' NodePort (a node that joins too), and deletes
// everything it tagged when the Service goes; a restarted fairlead-ccm deletes the NLB of a
// Service deleted while none ran. A classed Service gets nothing.
func TestAWSNLB(t *testing.T) {
	const ns, cluster = "ccm-aws", "ccm-test"
	awsapi.Env(t) // dummy credentials and region, inherited by fairlead-ccm
	moto := awsapi.StartMoto(t)
	cloud := awsClients(t, moto.URL)

	vpcs, err := cloud.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no default VPC: %v", err)
	}
	vpc := ptrString(vpcs.Vpcs[0].VpcId)
	subnets, err := cloud.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) < 2 {
		t.Fatalf("moto's default VPC has fewer than 2 subnets: %v", err)
	}
	// Subnets for internet-facing load balancers are found by this tag, as a cluster's are.
	var public []string
	for _, s := range subnets.Subnets[:2] {
		public = append(public, ptrString(s.SubnetId))
	}
	if _, err := cloud.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: public,
		Tags: []ec2types.Tag{{Key: awsString("kubernetes.io/role/elb"), Value: awsString("1")}}}); err != nil {
		t.Fatal(err)
	}
	images, err := cloud.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	run, err := cloud.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: images.Images[0].ImageId,
		MinCount: ptr.To[int32](3), MaxCount: ptr.To[int32](3), SubnetId: subnets.Subnets[0].SubnetId, InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatalf("starting instances in moto: %v", err)
	}
	// Two instances are nodes from the start; the third joins later.
	var instances []string
	addNode := func(i int) {
		in := run.Instances[i]
		id := ptrString(in.InstanceId)
		instances = append(instances, id)
		slices.Sort(instances)
		createNode(t, fmt.Sprintf("aws-node-%d", i), "aws:///"+awsapi.Region+"a/"+id, netip.MustParseAddr(ptrString(in.PrivateIpAddress)))
	}
	addNode(0)
	addNode(1)

	namespace(t, ns)
	create(t, lbService(ns, "classed", ptr.To("example.com/other")))
	cfg := fmt.Sprintf("provider: aws-nlb\naws:\n  region: %s\n  endpoint: %s\n  clusterName: %s\n  vpcID: %s\n",
		awsapi.Region, moto.URL, cluster, vpc)
	ccm := startCCM(t, cfg)

	create(t, lbService(ns, "web", nil))
	in := waitIngress(t, ns, "web")
	name := fairaws.LoadBalancerName(cluster, ns+"/web")
	lbs, err := cloud.ELBv2.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
	if err != nil || len(lbs.LoadBalancers) != 1 {
		t.Fatalf("no load balancer %s in moto: %v", name, err)
	}
	if want := ptrString(lbs.LoadBalancers[0].DNSName); in.Hostname != want || in.IP != "" {
		t.Fatalf("web's ingress is %+v; want the NLB's DNS name %q", in, want)
	}
	nodePort := get(t, ns, "web").Spec.Ports[0].NodePort
	waitTargets := func(what string) {
		t.Helper()
		kit.Eventually(t, settle, what, func(context.Context) error {
			got := targets(t, cloud)
			var want []string
			for _, id := range instances {
				want = append(want, fmt.Sprintf("%s:%d", id, nodePort))
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("targets %v, want %v", got, want)
			}
			return nil
		})
	}
	waitTargets("the nodes registered as targets on the NodePort")

	// The NLB annotations mean the same here as in fairlead-controller (one parser, in the
	// provider): applied in place, and an invalid one reported without touching the NLB.
	patchAnnotations(t, ns, "web", map[string]string{
		annotations.Prefix + annotations.HealthInterval:         "20",
		annotations.Prefix + annotations.AdditionalResourceTags: "team=ccm",
	})
	kit.Eventually(t, settle, "the annotations applied to the NLB", func(context.Context) error {
		tgs, err := cloud.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
		if err != nil || len(tgs.TargetGroups) != 1 {
			return fmt.Errorf("target groups %v, %v", tgs, err)
		}
		tags, err := cloud.ELBv2.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{ptrString(lbs.LoadBalancers[0].LoadBalancerArn)}})
		if err != nil {
			return err
		}
		team := ""
		for _, tag := range tags.TagDescriptions[0].Tags {
			if ptrString(tag.Key) == "team" {
				team = ptrString(tag.Value)
			}
		}
		if interval := aws.ToInt32(tgs.TargetGroups[0].HealthCheckIntervalSeconds); interval != 20 || team != "ccm" {
			return fmt.Errorf("health check every %d s, tag team=%q", interval, team)
		}
		return nil
	})
	patchAnnotations(t, ns, "web", map[string]string{annotations.Prefix + annotations.HealthInterval: "1"})
	kit.Eventually(t, settle, "an Event about web's annotation", func(context.Context) error {
		ev := events(t, ns, "web")
		if strings.Contains(ev, "SyncLoadBalancerFailed") && strings.Contains(ev, "InvalidService") &&
			strings.Contains(ev, annotations.Prefix+annotations.HealthInterval) {
			return nil
		}
		return fmt.Errorf("events:\n%s", ev)
	})
	tgs, err := cloud.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil || len(tgs.TargetGroups) != 1 || aws.ToInt32(tgs.TargetGroups[0].HealthCheckIntervalSeconds) != 20 {
		t.Fatalf("an invalid annotation changed the NLB: %+v, %v", tgs, err)
	}
	if got := get(t, ns, "web").Status.LoadBalancer.Ingress; len(got) != 1 || got[0].Hostname != in.Hostname {
		t.Fatalf("ingress %+v, want the NLB kept", got)
	}
	patchAnnotations(t, ns, "web", map[string]string{annotations.Prefix + annotations.HealthInterval: "20"})
	// A node joining reaches the load balancer through UpdateLoadBalancer.
	addNode(2)
	waitTargets("the new node registered as a target")

	// A Service deleted while no fairlead-ccm runs (its finalizer removed by hand) leaves its
	// NLB behind; the next one deletes it at start and keeps web's.
	create(t, lbService(ns, "gone", nil))
	waitIngress(t, ns, "gone")
	deleteBehind(t, ccm, ns, "gone")
	goneLB := "load balancer " + fairaws.LoadBalancerName(cluster, ns+"/gone")
	if !slices.Contains(tagged(t, cloud, cluster), goneLB) {
		t.Fatalf("no %s in moto; the sweep below would prove nothing", goneLB)
	}
	startCCM(t, cfg)
	kit.Eventually(t, settle, "gone's NLB deleted at start, web's kept", func(context.Context) error {
		var lbs, tgs, sgs []string
		for _, r := range tagged(t, cloud, cluster) {
			switch {
			case strings.HasPrefix(r, "load balancer "):
				lbs = append(lbs, r)
			case strings.HasPrefix(r, "target group "):
				tgs = append(tgs, r)
			case strings.HasPrefix(r, "security group "):
				sgs = append(sgs, r)
			}
		}
		if want := "load balancer " + name; !slices.Equal(lbs, []string{want}) || len(tgs) != 1 || len(sgs) != 1 {
			return fmt.Errorf("load balancers %v, target groups %v, security groups %v; want only web's", lbs, tgs, sgs)
		}
		return nil
	})
	waitTargets("web's targets unchanged after the restart")
	if left := tagged(t, cloud, cluster); len(left) == 0 {
		t.Fatal("nothing in moto carries the cluster's tag; the inventory below would prove nothing")
	}

	deleteAndWait(t, ns, "web")
	if left := tagged(t, cloud, cluster); len(left) != 0 {
		t.Fatalf("deleting the Service left in moto: %v", left)
	}
	classed := get(t, ns, "classed")
	if len(classed.Status.LoadBalancer.Ingress) != 0 || len(classed.Finalizers) != 0 {
		t.Fatalf("the classed Service was touched: finalizers %v, status %+v", classed.Finalizers, classed.Status)
	}
	deleteAndWait(t, ns, "classed")
}

// TestAWSEIP: with the aws-eip backend, fairlead-ccm gives an unclassed Service an Elastic IP
// allocated in moto (the emulator), tagged for it, in status.loadBalancer.ingress, retrying
// the throttling and 500s injected on the way; the speakers (fairlead-speaker --aws-eip on two
// node namespaces, test/awsnodes) associate it with the elected node's interface although no
// IPPool names it; a permission error is a Warning Event on the Service concerned and blocks
// nothing else; deleting the Services releases every address.
func TestAWSEIP(t *testing.T) {
	const ns, cluster = "ccm-eip", "ccm-test"
	netns.Require(t)
	awsapi.Env(t)
	moto := awsapi.StartMoto(t)
	proxy := awsapi.NewProxy(t, moto.URL)
	cloud := awsClients(t, moto.URL)
	namespace(t, ns)
	apiserver, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	nodes := awsnodes.New(t, env.Client, cloud, apiserver.Host, moto.URL, 2)
	binary := awsnodes.Speaker(t)
	byName := map[string]*awsnodes.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
		n.StartSpeaker(t, binary, awsnodes.Cluster{Kubeconfig: kubeconfig, MotoURL: moto.URL, Name: cluster})
	}

	// Between fairlead-ccm and AWS: throttling and 500s, which the SDK's retryer absorbs.
	proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AllocateAddress", Kind: awsapi.Throttle, Times: 2})
	proxy.Inject(awsapi.Fault{Service: "ec2", Action: "DescribeAddresses", Kind: awsapi.ServerError, Times: 2})
	startCCM(t, fmt.Sprintf("provider: aws-eip\naws: {region: %s, endpoint: %q, clusterName: %s, allocateOnDemand: true}\n",
		awsapi.Region, proxy.URL, cluster))

	create(t, lbService(ns, "web", nil))
	in := waitIngress(t, ns, "web")
	for _, action := range []string{"AllocateAddress", "DescribeAddresses"} {
		if total, faulted := proxy.Count(action); faulted != 2 || total <= faulted {
			t.Errorf("%s: %d calls, %d faulted; want the 2 faults retried", action, total, faulted)
		}
	}
	filter := []ec2types.Filter{{Name: awsString("tag:" + fairaws.TagService), Values: []string{ns + "/web"}}}
	addrs, err := cloud.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: filter})
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs.Addresses) != 1 || ptrString(addrs.Addresses[0].PublicIp) != in.IP {
		t.Fatalf("web's ingress is %+v; Elastic IPs tagged for it: %+v", in, addrs.Addresses)
	}
	// The speakers learn from the tags that the address is an Elastic IP of this cluster, and
	// the elected node takes it. (Nodes left by other tests have no live speaker: not elected.)
	owner, _ := election.Owner(in.IP, []string{nodes[0].Name, nodes[1].Name})
	awsnodes.WaitAssociated(t, cloud, ptrString(addrs.Addresses[0].AllocationId), byName[owner])

	// IAM forbids allocating: the new Service says why; web keeps its address.
	proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AllocateAddress", Kind: awsapi.AccessDenied})
	create(t, lbService(ns, "denied", nil))
	kit.Eventually(t, settle, "a Warning Event naming the permission error", func(context.Context) error {
		ev := events(t, ns, "denied")
		if strings.Contains(ev, "Warning") && strings.Contains(ev, "UnauthorizedOperation") {
			return nil
		}
		return fmt.Errorf("events:\n%s", ev)
	})
	if got := get(t, ns, "web").Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != in.IP {
		t.Fatalf("web's ingress changed to %+v while another Service failed", got)
	}
	// Granted: the service controller's retry gets it an address.
	proxy.Clear()
	waitIngress(t, ns, "denied")

	deleteAndWait(t, ns, "web")
	deleteAndWait(t, ns, "denied")
	if left := tagged(t, cloud, cluster); len(left) != 0 {
		t.Fatalf("deleting the Services left in moto: %v", left)
	}
}

func awsClients(t *testing.T, endpoint string) *fairaws.Clients {
	t.Helper()
	c, err := fairaws.NewClients(ctx, fairaws.Config{Endpoint: endpoint, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// targets lists every registered target in moto as "instance:port", sorted.
func targets(t *testing.T, c *fairaws.Clients) []string {
	t.Helper()
	tgs, err := c.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range tgs.TargetGroups {
		th, err := c.ELBv2.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range th.TargetHealthDescriptions {
			out = append(out, fmt.Sprintf("%s:%d", ptrString(d.Target.Id), ptr.Deref(d.Target.Port, 0)))
		}
	}
	slices.Sort(out)
	return out
}

// tagged lists everything in moto carrying the cluster's tag or a Fairlead name: load
// balancers, target groups, security groups and Elastic IPs.
func tagged(t *testing.T, c *fairaws.Clients, cluster string) []string {
	t.Helper()
	var out []string
	lbs, err := c.ELBv2.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
	if err != nil {
		t.Fatal(err)
	}
	tgs, err := c.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for _, l := range lbs.LoadBalancers {
		arns = append(arns, ptrString(l.LoadBalancerArn))
		if strings.HasPrefix(ptrString(l.LoadBalancerName), "fl-") {
			out = append(out, "load balancer "+ptrString(l.LoadBalancerName))
		}
	}
	for _, g := range tgs.TargetGroups {
		arns = append(arns, ptrString(g.TargetGroupArn))
		if strings.HasPrefix(ptrString(g.TargetGroupName), "fl-") {
			out = append(out, "target group "+ptrString(g.TargetGroupName))
		}
	}
	for i := 0; i < len(arns); i += 20 { // DescribeTags takes at most 20 ARNs
		tags, err := c.ELBv2.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: arns[i:min(i+20, len(arns))]})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range tags.TagDescriptions {
			for _, tg := range d.Tags {
				if ptrString(tg.Key) == fairaws.TagCluster && ptrString(tg.Value) == cluster {
					out = append(out, "tagged "+ptrString(d.ResourceArn))
				}
			}
		}
	}
	filter := []ec2types.Filter{{Name: awsString("tag:" + fairaws.TagCluster), Values: []string{cluster}}}
	sgs, err := c.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: filter})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range sgs.SecurityGroups {
		out = append(out, "security group "+ptrString(g.GroupName))
	}
	addrs, err := c.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: filter})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs.Addresses {
		out = append(out, "elastic IP "+ptrString(a.PublicIp))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func ptrString(s *string) string { return aws.ToString(s) }
func awsString(s string) *string { return aws.String(s) }

func patchAnnotations(t *testing.T, ns, name string, ann map[string]string) {
	t.Helper()
	svc := get(t, ns, name)
	base := svc.DeepCopy()
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	maps.Copy(svc.Annotations, ann)
	if err := env.Client.Patch(ctx, svc, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}
