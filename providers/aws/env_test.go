package aws_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// shared is the package's moto, started by TestMain.
var shared *awsapi.Moto

func TestMain(m *testing.M) {
	if kit.Short() {
		// The tests that need moto skip through awsapi.Env; the rest are pure.
		os.Exit(m.Run())
	}
	var err error
	if shared, err = awsapi.Launch(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

const (
	cluster    = "test-cluster"
	nodesGroup = "nodes"
)

// env is one moto, a fault proxy in front of it, and a few instances acting as nodes.
type env struct {
	moto  *awsapi.Moto
	proxy *awsapi.Proxy
	// direct talks to moto without the proxy: the test's own view of "what exists in AWS".
	direct *fairaws.Clients
	vpc    string
	// nodeSG is the nodes' security group, where the NLB mode opens target ports.
	nodeSG string
	nodes  []node
}

type node struct {
	instanceID, eni string
	privateIP       netip.Addr
}

func (n node) provider() providers.Node {
	return providers.Node{Name: n.instanceID, ProviderID: "aws:///us-east-1a/" + n.instanceID, Addresses: []netip.Addr{n.privateIP}}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	awsapi.Env(t)
	// One moto serves the package's tests (they run one after another: t.Setenv forbids
	// t.Parallel); each test starts from a reset one.
	shared.Reset(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moto output (access log left out):\n%s", shared.Output())
		}
	})
	e := &env{moto: shared}
	e.proxy = awsapi.NewProxy(t, e.moto.URL)
	e.direct = clientsFor(t, e.moto.URL)
	ctx := context.Background()

	vpcs, err := e.direct.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no default VPC: %v", err)
	}
	e.vpc = aws.ToString(vpcs.Vpcs[0].VpcId)
	subnets, err := e.direct.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) < 3 {
		t.Fatalf("moto's default VPC has fewer than 3 subnets: %v", err)
	}
	// Tag subnets as a cluster's would be: two zones for public, one for internal NLBs.
	var pub, internal []string
	for i, s := range subnets.Subnets[:3] {
		if i < 2 {
			pub = append(pub, aws.ToString(s.SubnetId))
		} else {
			internal = append(internal, aws.ToString(s.SubnetId))
		}
	}
	tag(t, e.direct, pub, "kubernetes.io/role/elb", "1")
	tag(t, e.direct, internal, "kubernetes.io/role/internal-elb", "1")

	sg, err := e.direct.EC2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(nodesGroup), Description: aws.String("the cluster's nodes"), VpcId: aws.String(e.vpc),
	})
	if err != nil {
		t.Fatalf("creating the nodes' security group: %v", err)
	}
	e.nodeSG = aws.ToString(sg.GroupId)

	images, err := e.direct.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	run, err := e.direct.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: images.Images[0].ImageId, MinCount: aws.Int32(3), MaxCount: aws.Int32(3),
		SubnetId: subnets.Subnets[0].SubnetId, InstanceType: ec2types.InstanceTypeT3Micro,
	})
	if err != nil {
		t.Fatalf("starting instances in moto: %v", err)
	}
	for _, i := range run.Instances {
		e.nodes = append(e.nodes, node{
			instanceID: aws.ToString(i.InstanceId),
			eni:        aws.ToString(i.NetworkInterfaces[0].NetworkInterfaceId),
			privateIP:  netip.MustParseAddr(aws.ToString(i.PrivateIpAddress)),
		})
	}
	return e
}

func tag(t *testing.T, c *fairaws.Clients, ids []string, k, v string) {
	t.Helper()
	if _, err := c.EC2.CreateTags(context.Background(), &ec2.CreateTagsInput{
		Resources: ids, Tags: []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}},
	}); err != nil {
		t.Fatalf("tagging %v: %v", ids, err)
	}
}

// clientsFor builds clients through the provider's own constructor (the SDK's default chain
// reading the test's environment), with short backoffs so retried faults do not slow tests.
func clientsFor(t *testing.T, endpoint string) *fairaws.Clients {
	t.Helper()
	c, err := fairaws.NewClients(context.Background(), fairaws.Config{Endpoint: endpoint, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewClients: %v", err)
	}
	return c
}

// nlb returns a fresh NLB provider talking through the proxy: a new one models a restarted
// controller, which knows nothing but what it finds in AWS.
func (e *env) nlb(t *testing.T) *fairaws.NLB {
	t.Helper()
	p, err := fairaws.NewNLB(clientsFor(t, e.proxy.URL), fairaws.NLBOptions{ClusterName: cluster, VPCID: e.vpc, NodeSecurityGroupID: e.nodeSG})
	if err != nil {
		t.Fatalf("NewNLB: %v", err)
	}
	return p
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return logr.NewContext(ctx, testr.New(t))
}

// inventory is everything that exists in (moto's) AWS that Fairlead could have created, read
// without the proxy: load balancers with their listeners, target groups with their targets,
// security groups other than the VPC's default one, Elastic IPs.
type inventory struct {
	LoadBalancers  []string // name scheme
	Listeners      []string // lb-name port/protocol -> target group name
	TargetGroups   []string // name protocol port health
	Targets        []string // tg-name id:port
	SecurityGroups []string // name
	Rules          []string // sg-name proto port cidr
	NodeRules      []string // proto port from-sg-name: rules of the nodes' group
	ElasticIPs     []string // ip service-tag
}

func (e *env) inventory(t *testing.T) inventory {
	t.Helper()
	ctx := context.Background()
	var inv inventory
	lbs, err := e.direct.ELBv2.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	tgs, err := e.direct.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	tgName := map[string]string{}
	for _, g := range tgs.TargetGroups {
		name := aws.ToString(g.TargetGroupName)
		tgName[aws.ToString(g.TargetGroupArn)] = name
		health := string(g.HealthCheckProtocol) + ":" + aws.ToString(g.HealthCheckPort) + aws.ToString(g.HealthCheckPath)
		inv.TargetGroups = append(inv.TargetGroups, join(name, string(g.Protocol), itoa(aws.ToInt32(g.Port)), string(g.TargetType), health))
		th, err := e.direct.ELBv2.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn})
		if err != nil {
			t.Fatalf("inventory: %v", err)
		}
		for _, d := range th.TargetHealthDescriptions {
			inv.Targets = append(inv.Targets, join(name, aws.ToString(d.Target.Id)+":"+itoa(aws.ToInt32(d.Target.Port))))
		}
	}
	for _, l := range lbs.LoadBalancers {
		inv.LoadBalancers = append(inv.LoadBalancers, join(aws.ToString(l.LoadBalancerName), string(l.Scheme)))
		ls, err := e.direct.ELBv2.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: l.LoadBalancerArn})
		if err != nil {
			t.Fatalf("inventory: %v", err)
		}
		for _, li := range ls.Listeners {
			to := ""
			if len(li.DefaultActions) > 0 {
				to = tgName[aws.ToString(li.DefaultActions[0].TargetGroupArn)]
			}
			inv.Listeners = append(inv.Listeners, join(aws.ToString(l.LoadBalancerName), itoa(aws.ToInt32(li.Port))+"/"+string(li.Protocol), "->", to))
		}
	}
	sgs, err := e.direct.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	sgName := map[string]string{}
	for _, g := range sgs.SecurityGroups {
		sgName[aws.ToString(g.GroupId)] = aws.ToString(g.GroupName)
	}
	for _, g := range sgs.SecurityGroups {
		if aws.ToString(g.GroupName) == nodesGroup {
			for _, p := range g.IpPermissions {
				for _, pair := range p.UserIdGroupPairs {
					inv.NodeRules = append(inv.NodeRules, join(aws.ToString(p.IpProtocol), itoa(aws.ToInt32(p.FromPort)), "from", sgName[aws.ToString(pair.GroupId)]))
				}
			}
		}
		if aws.ToString(g.GroupName) == "default" || aws.ToString(g.GroupName) == nodesGroup {
			continue
		}
		inv.SecurityGroups = append(inv.SecurityGroups, aws.ToString(g.GroupName))
		for _, p := range g.IpPermissions {
			for _, r := range p.IpRanges {
				inv.Rules = append(inv.Rules, join(aws.ToString(g.GroupName), aws.ToString(p.IpProtocol), itoa(aws.ToInt32(p.FromPort)), aws.ToString(r.CidrIp)))
			}
			for _, r := range p.Ipv6Ranges {
				inv.Rules = append(inv.Rules, join(aws.ToString(g.GroupName), aws.ToString(p.IpProtocol), itoa(aws.ToInt32(p.FromPort)), aws.ToString(r.CidrIpv6)))
			}
		}
	}
	addrs, err := e.direct.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	for _, a := range addrs.Addresses {
		svc := ""
		for _, tg := range a.Tags {
			if aws.ToString(tg.Key) == fairaws.TagService {
				svc = aws.ToString(tg.Value)
			}
		}
		inv.ElasticIPs = append(inv.ElasticIPs, join(aws.ToString(a.PublicIp), svc))
	}
	for _, s := range []*[]string{&inv.LoadBalancers, &inv.Listeners, &inv.TargetGroups, &inv.Targets, &inv.SecurityGroups, &inv.Rules, &inv.NodeRules, &inv.ElasticIPs} {
		slices.Sort(*s)
	}
	return inv
}

func (i inventory) empty() bool {
	return len(i.LoadBalancers)+len(i.Listeners)+len(i.TargetGroups)+len(i.Targets)+len(i.SecurityGroups)+len(i.Rules)+len(i.NodeRules)+len(i.ElasticIPs) == 0
}

func join(s ...string) string { return strings.Join(s, " ") }

func itoa(i int32) string { return strconv.Itoa(int(i)) }

func createLBInput(name string, e *env) *elbv2.CreateLoadBalancerInput {
	subnets, _ := e.direct.EC2.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{})
	return &elbv2.CreateLoadBalancerInput{
		Name: aws.String(name), Type: "network", Subnets: []string{aws.ToString(subnets.Subnets[0].SubnetId)},
	}
}
