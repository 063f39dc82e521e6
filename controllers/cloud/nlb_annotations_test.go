package cloud_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// targetGroup returns the only target group in moto.
func (e *env) targetGroup(t *testing.T) elbtypes.TargetGroup {
	t.Helper()
	out, err := e.direct.ELBv2.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil || len(out.TargetGroups) != 1 {
		t.Fatalf("target groups: %+v, %v; want one", out, err)
	}
	return out.TargetGroups[0]
}

func labelNode(t *testing.T, name, k, v string) {
	t.Helper()
	var n corev1.Node
	if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels[k] = v
	if err := k8s.Update(ctx, &n); err != nil {
		t.Fatal(err)
	}
}

// The NLB annotations through fairlead-controller: the healthCheckNodePort of an
// externalTrafficPolicy Local Service is its health check without any annotation, the
// annotations' values are applied over it, node labels choose the targets (a node labelled
// later joins), and an invalid value is a Warning Event and a False condition naming the
// annotation, while the existing NLB keeps serving unchanged.
func TestNLBAnnotations(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.nodes[0], e.nodes[1]
	e.start(t, true, false)
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	e.service(t, "web", nlbClass, local,
		withAnnotation(annotations.Prefix+annotations.HealthInterval, "30"),
		withAnnotation(annotations.Prefix+annotations.TargetNodeLabels, "pool=edge"))
	host := e.hostname(t, "web")
	hcnp := e.getSvc(t, "web").Spec.HealthCheckNodePort
	g := e.targetGroup(t)
	if g.HealthCheckProtocol != "HTTP" || aws.ToString(g.HealthCheckPort) != fmt.Sprint(hcnp) || aws.ToString(g.HealthCheckPath) != "/healthz" ||
		aws.ToInt32(g.HealthCheckIntervalSeconds) != 30 {
		t.Fatalf("health check %s:%s%s every %d s, want HTTP on healthCheckNodePort %d /healthz every 30 s", g.HealthCheckProtocol,
			aws.ToString(g.HealthCheckPort), aws.ToString(g.HealthCheckPath), aws.ToInt32(g.HealthCheckIntervalSeconds), hcnp)
	}
	if inv := e.inventory(t); len(inv.Targets) != 0 {
		t.Fatalf("targets %v, want none: no node is labelled pool=edge", inv.Targets)
	}
	labelNode(t, n2.name, "pool", "edge")
	e.waitInventory(t, func(inv inventory) error {
		if !slices.Equal(targetsOf(inv), instances(n2)) {
			return fmt.Errorf("targets %v, want %s, the node just labelled pool=edge", inv.Targets, n2.instanceID)
		}
		return nil
	})
	_ = n1

	// Invalid values: reported, nothing in AWS changes, the status keeps the NLB.
	before := e.inventory(t)
	e.patchSvc(t, "web", withAnnotation(annotations.Prefix+annotations.HealthInterval, "3"))
	note := e.event(t, "web", providers.ReasonInvalidService)
	if !strings.Contains(note, annotations.Prefix+annotations.HealthInterval) || !strings.Contains(note, `"3"`) {
		t.Errorf("event %q does not name the annotation and its value", note)
	}
	svc := e.getSvc(t, "web")
	c := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ConditionIPAllocated)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != providers.ReasonInvalidService || !strings.Contains(c.Message, annotations.HealthInterval) {
		t.Errorf("condition %+v, want False, %s, naming the annotation", c, providers.ReasonInvalidService)
	}
	if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Status.LoadBalancer.Ingress[0].Hostname != host {
		t.Errorf("ingress %+v, want the NLB %s kept", svc.Status.LoadBalancer.Ingress, host)
	}
	time.Sleep(time.Second) // give a wrong reconcile the time to do damage
	if after := e.inventory(t); !slices.Equal(after.LoadBalancers, before.LoadBalancers) || !slices.Equal(after.Targets, before.Targets) ||
		aws.ToInt32(e.targetGroup(t).HealthCheckIntervalSeconds) != 30 {
		t.Errorf("an invalid Service changed AWS: %+v, was %+v", after, before)
	}

	// Fixed: applied in place.
	e.patchSvc(t, "web", withAnnotation(annotations.Prefix+annotations.HealthInterval, "10"))
	kit.Eventually(t, time.Minute, "the fixed health check interval on the target group", func(context.Context) error {
		if got := aws.ToInt32(e.targetGroup(t).HealthCheckIntervalSeconds); got != 10 {
			return fmt.Errorf("health check interval %d s, want 10", got)
		}
		c := meta.FindStatusCondition(e.getSvc(t, "web").Status.Conditions, v1alpha1.ConditionIPAllocated)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	e.deleteSvc(t, "web")
	e.assertClean(t)
}

// The controller is stopped while it deletes a Service's NLB under a name of the Service's
// choosing (its DeleteLoadBalancer call hangs); the next controller finds that load balancer
// through the name recorded on the Service's security group and finishes: the Service goes and
// nothing is left in AWS.
func TestNLBStoppedMidDeletion(t *testing.T) {
	e := newEnv(t, 1)
	c := e.start(t, true, false)
	e.service(t, "web", nlbClass, withAnnotation(annotations.Prefix+annotations.LoadBalancerName, "shop-web"))
	e.hostname(t, "web")
	if inv := e.inventory(t); !slices.Equal(inv.LoadBalancers, []string{"shop-web"}) {
		t.Fatalf("load balancers %v, want shop-web", inv.LoadBalancers)
	}
	e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "DeleteLoadBalancer", Kind: awsapi.Delay, Delay: 10 * time.Minute})
	if err := k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, time.Minute, "the first DeleteLoadBalancer call", func(context.Context) error {
		if n, _ := e.proxy.Count("DeleteLoadBalancer"); n == 0 {
			return fmt.Errorf("DeleteLoadBalancer not called yet")
		}
		return nil
	})
	c.stop()
	e.proxy.Clear()
	if mid := e.inventory(t); !slices.Equal(mid.LoadBalancers, []string{"shop-web"}) || len(mid.TargetGroups) != 1 || len(mid.SecurityGroups) != 1 {
		t.Fatalf("stopped before the delete, expected everything left: %+v", mid)
	}
	e.start(t, true, false)
	kit.Eventually(t, time.Minute, "the Service to be deleted by the restarted controller", func(context.Context) error {
		var s corev1.Service
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "web"}, &s); err == nil {
			return fmt.Errorf("Service still there (finalizers %v)", s.Finalizers)
		}
		return nil
	})
	e.assertClean(t)
}
