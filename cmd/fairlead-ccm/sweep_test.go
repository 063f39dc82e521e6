package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// TestAWSEIPSweepAtStart: a Service deleted while no fairlead-ccm ran (its cleanup finalizer
// removed by hand, as an operator uninstalling might) leaves its Elastic IP behind; the next
// fairlead-ccm releases it once it leads, and only then: a standby does nothing. A Service that
// still exists keeps its address.
func TestAWSEIPSweepAtStart(t *testing.T) {
	const ns, cluster = "ccm-sweep", "ccm-test"
	awsapi.Env(t)
	moto := awsapi.StartMoto(t)
	cloud := awsClients(t, moto.URL)
	namespace(t, ns)
	cfg := fmt.Sprintf("provider: aws-eip\naws: {region: %s, endpoint: %q, clusterName: %s, allocateOnDemand: true}\n",
		awsapi.Region, moto.URL, cluster)

	first := startCCM(t, cfg)
	create(t, lbService(ns, "gone", nil))
	create(t, lbService(ns, "kept", nil))
	gone, kept := waitIngress(t, ns, "gone"), waitIngress(t, ns, "kept")
	deleteBehind(t, first, ns, "gone")
	held := func() map[string]string {
		t.Helper()
		out, err := cloud.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{
			{Name: awsString("tag:" + fairaws.TagCluster), Values: []string{cluster}}}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, a := range out.Addresses {
			for _, tag := range a.Tags {
				if ptrString(tag.Key) == fairaws.TagService {
					m[ptrString(tag.Value)] = ptrString(a.PublicIp)
				}
			}
		}
		return m
	}
	if got := held(); got[ns+"/gone"] != gone.IP || got[ns+"/kept"] != kept.IP {
		t.Fatalf("before the sweep, Elastic IPs tagged %v; want gone's %s and kept's %s", got, gone.IP, kept.IP)
	}

	// Someone else leads: the new replica waits as a standby and must not sweep. (The Lease in
	// the test's namespace: other tests leave theirs in default.)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fairlead-ccm"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("another-replica"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: ptr.To(metav1.NewMicroTime(time.Now())), RenewTime: ptr.To(metav1.NewMicroTime(time.Now()))}}
	create(t, lease)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, lease) })
	standby := startCCM(t, cfg, "--leader-elect=true", "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
		"--leader-elect-retry-period=250ms", "--leader-elect-resource-namespace="+ns)
	kit.Eventually(t, settle, "the new replica to try the Lease", func(context.Context) error {
		if !strings.Contains(strings.ToLower(standby.logs()), "attempting to acquire leader lease") {
			return fmt.Errorf("no attempt in its logs yet")
		}
		return nil
	})
	kit.Consistently(t, 5*time.Second, "gone's Elastic IP held while the replica does not lead", func(context.Context) error {
		if got := held(); got[ns+"/gone"] != gone.IP {
			return fmt.Errorf("Elastic IPs tagged %v", got)
		}
		return nil
	})

	// The other replica goes away without handing over; once its Lease expires the new one leads.
	if err := env.Client.Delete(ctx, lease); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, settle, "gone's Elastic IP released by the new leader", func(context.Context) error {
		if got := held(); got[ns+"/gone"] != "" {
			return fmt.Errorf("Elastic IPs tagged %v", got)
		}
		return nil
	})
	if got := held(); got[ns+"/kept"] != kept.IP {
		t.Fatalf("kept's Elastic IP %s is gone: tagged %v", kept.IP, got)
	}
	if in := get(t, ns, "kept").Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != kept.IP {
		t.Fatalf("kept's ingress is %+v, want %s", in, kept.IP)
	}
	deleteAndWait(t, ns, "kept")
	// Only this namespace's: Services other tests leave in the apiserver get addresses too.
	for key, ip := range held() {
		if strings.HasPrefix(key, ns+"/") {
			t.Errorf("deleting kept left %s tagged for %s", ip, key)
		}
	}
}
