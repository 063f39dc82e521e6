// Package awsnodes builds "EC2 nodes" for tests of the Elastic IP path: instances in moto (the
// AWS emulator) in a VPC of their own, each matched by a network namespace with the instance's
// private address on a shared bridge and a Node object with its providerID and InternalIP, and
// runs the real fairlead-speaker on them. The speakers reach the apiserver and moto through
// relays on their namespace's loopback; nothing leaves the namespaces but those relays.
package awsnodes

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

// Node is one instance and its namespace.
type Node struct {
	Name, InstanceID, ENI string
	IP                    netip.Addr
	NS                    *netns.NS
	// Speaker is the running fairlead-speaker, if started.
	Speaker *netns.Proc
}

// Cluster is what the nodes' speakers connect to.
type Cluster struct {
	// Kubeconfig points at the apiserver, whose address is relayed into every namespace.
	Kubeconfig string
	// MotoURL is moto's endpoint (on 127.0.0.1), relayed likewise.
	MotoURL string
	// Name is the cluster name Elastic IPs are tagged with.
	Name string
}

// New makes n instances in a new VPC (10.77.0.0/24; the addresses exist only inside the
// test's namespaces) and their namespaces and Nodes (Ready), named node1..noden.
func New(t *testing.T, k8s client.Client, c *fairaws.Clients, apiserverHost string, motoURL string, n int) []*Node {
	t.Helper()
	ctx := context.Background()
	moto, err := url.Parse(motoURL)
	if err != nil || moto.Hostname() != "127.0.0.1" || os.Getenv("AWS_ACCESS_KEY_ID") != "testing" {
		t.Fatalf("refusing to run speakers against %q without the emulator's credentials (awsapi.Env)", motoURL)
	}
	vpc, err := c.EC2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.77.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	subnet, err := c.EC2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.77.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	images, err := c.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	lan := netns.New(t, "eiplan")
	var nodes []*Node
	var ports []string
	for i := 1; i <= n; i++ {
		nd := &Node{Name: fmt.Sprintf("node%d", i), IP: netip.MustParseAddr(fmt.Sprintf("10.77.0.%d", 10+i))}
		run, err := c.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: images.Images[0].ImageId,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro,
			SubnetId: subnet.Subnet.SubnetId, PrivateIpAddress: aws.String(nd.IP.String())})
		if err != nil {
			t.Fatal(err)
		}
		inst := run.Instances[0]
		nd.InstanceID = aws.ToString(inst.InstanceId)
		nd.ENI = aws.ToString(inst.NetworkInterfaces[0].NetworkInterfaceId)
		if got := aws.ToString(inst.PrivateIpAddress); got != nd.IP.String() {
			t.Fatalf("instance %s got %s, asked for %s", nd.InstanceID, got, nd.IP)
		}

		nd.NS = netns.New(t, "eip"+nd.Name)
		port := "p" + nd.Name
		netns.Veth(t, nd.NS, "eth0", lan, port)
		ports = append(ports, port)
		nd.NS.Addr("eth0", nd.IP.String()+"/24")
		nd.NS.Forward(apiserverHost, apiserverHost)
		nd.NS.Forward(moto.Host, moto.Host)

		kn := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd.Name},
			Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + nd.InstanceID}}
		if err := k8s.Create(ctx, kn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = k8s.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd.Name}})
		})
		kn.Status = corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nd.IP.String()}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		}
		if err := k8s.Status().Update(ctx, kn); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	lan.Bridge("br0", ports...)
	return nodes
}

// Speaker returns fairlead-speaker, built once per source (kit.Build).
func Speaker(t *testing.T) string {
	t.Helper()
	return kit.Binary(t, "./cmd/fairlead-speaker", kit.BuildOptions{})
}

// WaitAssociated waits until the Elastic IP is associated with n's interface and private
// address and stays so for 2 s (a speaker that has not joined the others yet may claim it
// briefly).
func WaitAssociated(t *testing.T, c *fairaws.Clients, allocationID string, n *Node) {
	t.Helper()
	var since time.Time // since when it has been where it should be
	what := fmt.Sprintf("Elastic IP %s to stay associated with %s (%s/%s) for 2 s", allocationID, n.Name, n.ENI, n.IP)
	kit.Eventually(t, time.Minute, what, func(ctx context.Context) error {
		got, err := c.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{allocationID}})
		if err != nil {
			since = time.Time{}
			return err
		}
		if len(got.Addresses) != 1 {
			since = time.Time{}
			return fmt.Errorf("%d addresses", len(got.Addresses))
		}
		a := got.Addresses[0]
		if aws.ToString(a.NetworkInterfaceId) != n.ENI || aws.ToString(a.PrivateIpAddress) != n.IP.String() {
			since = time.Time{}
			return fmt.Errorf("associated with %s/%s", aws.ToString(a.NetworkInterfaceId), aws.ToString(a.PrivateIpAddress))
		}
		if since.IsZero() {
			since = time.Now()
		}
		if held := time.Since(since); held <= 2*time.Second {
			return fmt.Errorf("associated for %s only", held.Round(time.Millisecond))
		}
		return nil
	})
}

// StartSpeaker runs binary (from Speaker) with --aws-eip and nothing else in the node's
// namespace; it is killed when the test ends.
func (n *Node) StartSpeaker(t *testing.T, binary string, c Cluster, extra ...string) {
	t.Helper()
	args := append([]string{"--kubeconfig", c.Kubeconfig, "--node-name", n.Name, "--l2=false", "--aws-eip",
		"--aws-endpoint", c.MotoURL, "--aws-cluster-name", c.Name, "--metrics-bind-address", "0"}, extra...)
	n.Speaker = n.NS.Start(binary, args...)
}
