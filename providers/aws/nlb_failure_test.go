package aws_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
	"github.com/fairlead-lb/fairlead/test/awsapi"
)

// leakService is a Service with every annotation that makes Ensure create or set something
// more (TLS listener with an SNI certificate, attributes, tags, health check, proxy protocol).
func leakService(t *testing.T, e *env) *providers.Service {
	svc := webService(e.nodes[0], e.nodes[1])
	svc.Annotations = ann(
		annotations.SSLCert, certificate(t, e, "a.example.com")+","+certificate(t, e, "b.example.com"), annotations.SSLPorts, "443",
		annotations.ProxyProtocol, "*", annotations.HealthInterval, "20",
		annotations.LoadBalancerAttributes, "load_balancing.cross_zone.enabled=true",
		annotations.TargetGroupAttributes, "deregistration_delay.timeout_seconds=10",
		annotations.AdditionalResourceTags, "team=shop",
		annotations.LoadBalancerName, "shop-web", // found through its security group's tags
	)
	return svc
}

// step is a call that changes something, and how many calls of its action came before it.
type step struct {
	awsapi.Call
	nth int
}

func (s step) String() string { return fmt.Sprintf("%s#%d", s.Action, s.nth+1) }

// fault fails this step: "denied", it never takes effect (and neither do the calls of its
// action after it); "landed", it takes effect in AWS but its answer is lost, and with it the
// controller (the provider then gets one attempt per call, so nothing retries it).
func (s step) fault(mode string) awsapi.Fault {
	if mode == "landed" {
		return awsapi.Fault{Service: s.Service, Action: s.Action, Kind: awsapi.DropAfter, Skip: s.nth, Times: 1}
	}
	return awsapi.Fault{Service: s.Service, Action: s.Action, Kind: awsapi.AccessDenied, Skip: s.nth}
}

// dying is the provider that stops at a step: one attempt per call, as the process that made
// the call is gone before it could retry.
func (e *env) dying(t *testing.T, mode string) *fairaws.NLB {
	t.Helper()
	if mode != "landed" {
		return e.nlb(t)
	}
	c, err := fairaws.NewClients(context.Background(), fairaws.Config{Endpoint: e.proxy.URL, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := fairaws.NewNLB(c, fairaws.NLBOptions{ClusterName: cluster, VPCID: e.vpc, NodeSecurityGroupID: e.nodeSG})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// steps are the calls that change something, in order.
func steps(calls []awsapi.Call) []step {
	var out []step
	seen := map[string]int{}
	for _, c := range calls {
		if !strings.HasPrefix(c.Action, "Describe") {
			out = append(out, step{c, seen[c.Action]})
			seen[c.Action]++
		}
	}
	return out
}

// The controller stops at every step of creating and of deleting an NLB: at each call that
// changes something (as a clean run makes them), either before the call takes effect or just
// after (its answer lost with the process). A fresh provider (a restarted controller) must
// then find what was made (Owned), finish without duplicating anything, or release it all:
// nothing tagged is left.
func TestNLBRestartAtEveryStep(t *testing.T) {
	e := newEnv(t)
	svc := leakService(t, e)

	// The steps of a clean run, and the state it reaches.
	mark := len(e.proxy.Calls())
	mustEnsure(t, e.nlb(t), svc)
	creation := steps(e.proxy.Calls()[mark:])
	clean := e.inventory(t)
	mark = len(e.proxy.Calls())
	mustRelease(t, e.nlb(t), "shop/web")
	deletion := steps(e.proxy.Calls()[mark:])
	assertEmpty(t, e)
	t.Logf("creation: %v; deletion: %v", creation, deletion)
	if len(creation) < 12 || len(deletion) < 5 {
		t.Fatalf("a clean run took only %d creation and %d deletion steps; the test would prove little", len(creation), len(deletion))
	}

	// findable checks that whatever is left is Owned by the Service.
	findable := func(t *testing.T, fresh *fairaws.NLB, when string) {
		t.Helper()
		owned, err := fresh.Owned(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		if made := !e.inventory(t).empty(); made != reflect.DeepEqual(owned, []string{"shop/web"}) {
			t.Fatalf("after a stop at %s: Owned = %v, but something is left: %v", when, owned, made)
		}
	}
	for _, step := range creation {
		for _, c := range []struct{ mode, then string }{{"denied", "ensure"}, {"denied", "release"}, {"landed", "ensure"}, {"landed", "release"}} {
			mode, then := c.mode, c.then
			t.Run("create/"+step.String()+"/"+mode+"/"+then, func(t *testing.T) {
				e.proxy.Inject(step.fault(mode))
				_, err := e.dying(t, mode).Ensure(ctxFor(t), svc)
				e.proxy.Clear()
				if err == nil || !strings.Contains(err.Error(), step.Action) {
					t.Fatalf("Ensure stopped at %s (%s): %v, want an error naming it", step.Action, mode, err)
				}
				fresh := e.nlb(t)
				findable(t, fresh, step.Action)
				if then == "ensure" {
					mustEnsure(t, fresh, svc)
					if got := e.inventory(t); !reflect.DeepEqual(got, clean) {
						t.Fatalf("after a restart at %s:\n got %+v\nwant %+v", step.Action, got, clean)
					}
				}
				mustRelease(t, fresh, "shop/web")
				assertEmpty(t, e)
			})
		}
	}
	for _, step := range deletion {
		for _, mode := range []string{"denied", "landed"} {
			t.Run("delete/"+step.String()+"/"+mode, func(t *testing.T) {
				mustEnsure(t, e.nlb(t), svc)
				e.proxy.Inject(step.fault(mode))
				err := e.dying(t, mode).Release(ctxFor(t), "shop/web")
				e.proxy.Clear()
				if err == nil || !strings.Contains(err.Error(), step.Action) {
					t.Fatalf("Release stopped at %s (%s): %v, want an error naming it", step.Action, mode, err)
				}
				fresh := e.nlb(t)
				findable(t, fresh, step.Action)
				mustRelease(t, fresh, "shop/web")
				assertEmpty(t, e)
			})
		}
	}
}

// A call that reaches AWS but whose answer is lost is retried by the SDK; the retry must not
// create a second resource.
func TestNLBLostAnswers(t *testing.T) {
	e := newEnv(t)
	svc := webService(e.nodes[0])
	p := e.nlb(t)
	mustEnsure(t, p, svc)
	clean := e.inventory(t)
	mustRelease(t, p, "shop/web")

	// CreateLoadBalancer is left out: AWS documents it as idempotent (a repeated call with the
	// same name and settings returns the existing load balancer,
	// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html),
	// but moto 5.2.1 creates a second one under the same name, so a lost answer cannot be
	// emulated faithfully for it.
	for _, step := range []struct{ service, action string }{
		{"ec2", "CreateSecurityGroup"},
		{"ec2", "AuthorizeSecurityGroupIngress"},
		{"elasticloadbalancing", "CreateTargetGroup"},
		{"elasticloadbalancing", "RegisterTargets"},
		{"elasticloadbalancing", "CreateListener"},
	} {
		t.Run(step.action, func(t *testing.T) {
			e.proxy.Inject(awsapi.Fault{Service: step.service, Action: step.action, Kind: awsapi.DropAfter, Times: 1})
			_, err := p.Ensure(ctxFor(t), svc)
			e.proxy.Clear()
			if err != nil {
				// A retried create may fail with "already exists"; the next reconcile adopts.
				t.Logf("Ensure after a lost %s answer: %v", step.action, err)
			}
			// AWS documents CreateListener as idempotent too (same settings: the existing
			// listener, https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateListener.html);
			// moto 5.2.1 adds a second listener on the port, which the next reconcile removes.
			mustEnsure(t, e.nlb(t), svc)
			if got := e.inventory(t); !reflect.DeepEqual(got, clean) {
				t.Fatalf("after a lost %s answer:\n got %+v\nwant %+v", step.action, got, clean)
			}
			mustRelease(t, p, "shop/web")
			assertEmpty(t, e)
		})
	}
}

// Throttling, 500s, reset connections and slow answers are retried by the SDK's standard
// retryer: Ensure succeeds and each faulted call was repeated.
func TestNLBTransientFaultsAreRetried(t *testing.T) {
	e := newEnv(t)
	faults := []awsapi.Fault{
		{Service: "elasticloadbalancing", Action: "CreateLoadBalancer", Kind: awsapi.Throttle, Times: 3},
		{Service: "elasticloadbalancing", Action: "CreateTargetGroup", Kind: awsapi.ServerError, Times: 2},
		{Service: "elasticloadbalancing", Action: "DescribeLoadBalancers", Kind: awsapi.Drop, Times: 2},
		{Service: "ec2", Action: "CreateSecurityGroup", Kind: awsapi.Throttle, Times: 2},
		{Service: "ec2", Action: "DescribeSecurityGroupRules", Kind: awsapi.ServerError, Times: 1},
		{Service: "elasticloadbalancing", Action: "CreateListener", Kind: awsapi.Delay, Delay: 300 * time.Millisecond, Times: 1},
	}
	for _, f := range faults {
		e.proxy.Inject(f)
	}
	p := e.nlb(t)
	svc := webService(e.nodes[0])
	mustEnsure(t, p, svc)
	for _, f := range faults {
		total, faulted := e.proxy.Count(f.Action)
		want := f.Times
		if faulted != want || total <= faulted {
			t.Errorf("%s: %d calls, %d faulted; want %d faulted and then success", f.Action, total, faulted, want)
		}
	}
	inv := e.inventory(t)
	if len(inv.LoadBalancers) != 1 || len(inv.TargetGroups) != 2 || len(inv.Listeners) != 2 || len(inv.SecurityGroups) != 1 {
		t.Fatalf("after retried faults: %+v", inv)
	}
	mustRelease(t, p, "shop/web")
	assertEmpty(t, e)
}

// A permission error is final: not retried, reported with the reason PermissionDenied and a
// message naming the call, and nothing half-made stays unfindable.
func TestNLBPermissionDenied(t *testing.T) {
	e := newEnv(t)
	p := e.nlb(t)
	svc := webService(e.nodes[0])
	for _, f := range []awsapi.Fault{
		{Service: "ec2", Action: "CreateSecurityGroup", Kind: awsapi.AccessDenied},
		{Service: "elasticloadbalancing", Action: "CreateLoadBalancer", Kind: awsapi.AccessDenied},
		{Service: "elasticloadbalancing", Action: "DescribeTargetGroups", Kind: awsapi.AccessDenied},
	} {
		e.proxy.Inject(f)
		before, _ := e.proxy.Count(f.Action)
		_, err := p.Ensure(ctxFor(t), svc)
		e.proxy.Clear()
		if providers.ReasonOf(err) != providers.ReasonPermissionDenied {
			t.Fatalf("Ensure with %s denied: %v (reason %s), want reason %s", f.Action, err, providers.ReasonOf(err), providers.ReasonPermissionDenied)
		}
		if msg := err.Error(); !strings.Contains(msg, f.Action) || !strings.Contains(msg, "permission denied") {
			t.Errorf("error %q does not name %s and the permission problem", msg, f.Action)
		}
		if after, _ := e.proxy.Count(f.Action); after-before != 1 {
			t.Errorf("%s denied was tried %d times, want once (not retried)", f.Action, after-before)
		}
	}

	// Release denied: reported the same way; the load balancer stays findable for the retry.
	mustEnsure(t, p, svc)
	e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "DeleteLoadBalancer", Kind: awsapi.AccessDenied})
	err := p.Release(ctxFor(t), "shop/web")
	e.proxy.Clear()
	if providers.ReasonOf(err) != providers.ReasonPermissionDenied {
		t.Fatalf("Release with DeleteLoadBalancer denied: %v, want reason %s", err, providers.ReasonPermissionDenied)
	}
	if owned, err := e.nlb(t).Owned(ctxFor(t)); err != nil || !reflect.DeepEqual(owned, []string{"shop/web"}) {
		t.Fatalf("Owned after a denied release = %v, %v; want [shop/web]", owned, err)
	}
	mustRelease(t, p, "shop/web")
	assertEmpty(t, e)
}

// An answer slower than the caller's deadline ends Ensure with the context's error; the next
// attempt finishes the job.
func TestNLBSlowAnswerHonoursDeadline(t *testing.T) {
	e := newEnv(t)
	p := e.nlb(t)
	svc := webService(e.nodes[0])
	e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "CreateTargetGroup", Kind: awsapi.Delay, Delay: time.Minute})
	ctx, cancel := context.WithTimeout(ctxFor(t), 2*time.Second)
	defer cancel()
	_, err := p.Ensure(ctx, svc)
	e.proxy.Clear()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ensure against a stalled API: %v, want context.DeadlineExceeded", err)
	}
	mustEnsure(t, p, svc)
	if inv := e.inventory(t); len(inv.TargetGroups) != 2 || len(inv.Listeners) != 2 {
		t.Fatalf("after the stall: %+v", inv)
	}
	mustRelease(t, p, "shop/web")
	assertEmpty(t, e)
}
