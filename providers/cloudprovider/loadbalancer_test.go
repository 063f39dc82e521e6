package cloudprovider

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

// The upstream service controller calls EnsureLoadBalancer (service worker) and
// UpdateLoadBalancer (node worker, when a node joins) for one Service at the same time; a
// second EnsureLoadBalancer can overlap too (a Service re-created while the first call runs).
// Whatever overlaps, the Service ends with one Elastic IP in moto, the one every call
// reported, and the adapter keeps no state for Services it is not working on.
func TestAWSEIPConcurrentCalls(t *testing.T) {
	const ns, cluster = "eip-race", "race"
	lb, proxy, held := eipBackend(t, ns, cluster)
	ctx := context.Background()
	// AllocateAddress answers late, as AWS may under load: the second call reads the
	// Service's Elastic IPs (none) while the first call's allocation is still on its way.
	proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AllocateAddress", Kind: awsapi.Delay, Delay: time.Second})

	ensure := func(svc *v1.Service) ([]string, error) {
		st, err := lb.EnsureLoadBalancer(ctx, cluster, svc, nil)
		if err != nil {
			return nil, err
		}
		var ips []string
		for _, in := range st.Ingress {
			ips = append(ips, in.IP)
		}
		return ips, nil
	}
	update := func(svc *v1.Service) ([]string, error) { return nil, lb.UpdateLoadBalancer(ctx, cluster, svc, nil) }
	for _, tc := range []struct {
		name   string
		second func(*v1.Service) ([]string, error)
	}{
		{"ensure-update", update},
		{"ensure-ensure", ensure},
	} {
		svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}}}
		before, _ := proxy.Count("AllocateAddress")
		var wg sync.WaitGroup
		start := make(chan struct{})
		reported := make([][]string, 2)
		errs := make([]error, 2)
		for i, call := range []func(*v1.Service) ([]string, error){ensure, tc.second} {
			wg.Go(func() {
				<-start
				reported[i], errs[i] = call(svc)
			})
		}
		close(start)
		wg.Wait()
		if err := errorsOf(errs); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		after, _ := proxy.Count("AllocateAddress")
		ips := held(svc)
		if after-before != 1 || len(ips) != 1 {
			t.Errorf("%s: %d AllocateAddress calls, Elastic IPs tagged for the Service %v; want one of each", tc.name, after-before, ips)
		}
		for i, r := range reported {
			if r != nil && !slices.Equal(r, ips) {
				t.Errorf("%s: call %d reported %v; tagged in moto %v", tc.name, i, r, ips)
			}
		}
		if n := lb.locks.size(); n != 0 {
			t.Errorf("%s: %d Services still have lock entries after every call returned", tc.name, n)
		}
		if err := lb.EnsureLoadBalancerDeleted(ctx, cluster, svc); err != nil {
			t.Fatal(err)
		}
		if left := held(svc); len(left) != 0 {
			t.Fatalf("%s: deleting left %v", tc.name, left)
		}
	}
}

func errorsOf(errs []error) error {
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("call %d: %w", i, err)
		}
	}
	return nil
}

// eipBackend is the adapter over the Elastic IP provider, talking to moto through the returned
// fault proxy, with a real apiserver holding namespace ns; held lists the addresses tagged for
// a Service, read from moto directly.
func eipBackend(t *testing.T, ns, cluster string) (lb *LoadBalancer, proxy *awsapi.Proxy, held func(*v1.Service) []string) {
	t.Helper()
	awsapi.Env(t)
	moto := awsapi.StartMoto(t)
	proxy = awsapi.NewProxy(t, moto.URL)
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	if err := env.Client.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	cloud, err := New(ctx, Config{Provider: BackendAWSEIP, AWS: AWSConfig{Region: awsapi.Region, Endpoint: proxy.URL,
		ClusterName: cluster, AllocateOnDemand: true}}, env.Client)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := fairaws.NewClients(ctx, fairaws.Config{Region: awsapi.Region, Endpoint: moto.URL})
	if err != nil {
		t.Fatal(err)
	}
	held = func(svc *v1.Service) []string {
		t.Helper()
		out, err := direct.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + fairaws.TagService), Values: []string{key(svc)}}}})
		if err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, a := range out.Addresses {
			ips = append(ips, aws.ToString(a.PublicIp))
		}
		return ips
	}
	return cloud.lb, proxy, held
}

// The service controller's node worker calls UpdateLoadBalancer for every Service in its
// cache, from the copy it took when the node sync began: for a Service being deleted, that
// call can come after EnsureLoadBalancerDeleted, with or without the deletionTimestamp. It
// must not give the Service an Elastic IP again, which nothing would ever release.
func TestAWSEIPUpdateAfterDelete(t *testing.T) {
	const ns, cluster = "eip-update", "update"
	lb, proxy, held := eipBackend(t, ns, cluster)
	ctx := context.Background()
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}}}
	if _, err := lb.EnsureLoadBalancer(ctx, cluster, svc, nil); err != nil {
		t.Fatal(err)
	}
	stale := svc.DeepCopy()
	deleting := svc.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if err := lb.EnsureLoadBalancerDeleted(ctx, cluster, deleting); err != nil {
		t.Fatal(err)
	}
	before, _ := proxy.Count("AllocateAddress")
	for _, s := range []*v1.Service{stale, deleting} {
		if err := lb.UpdateLoadBalancer(ctx, cluster, s, nil); err != nil {
			t.Fatalf("UpdateLoadBalancer after deletion: %v", err)
		}
	}
	if after, _ := proxy.Count("AllocateAddress"); after != before {
		t.Errorf("UpdateLoadBalancer after EnsureLoadBalancerDeleted called AllocateAddress %d times", after-before)
	}
	if left := held(svc); len(left) != 0 {
		t.Errorf("Elastic IPs tagged for the deleted Service: %v", left)
	}
}
