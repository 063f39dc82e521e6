package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// Scaling the demo Deployment with kubectl (through the lab's relay, as a user does) changes
// the set of Pods answering through the layer 2 address: 3 → 5 brings the new Pods in, 5 → 1
// leaves only the one.
func TestScalingChangesAnsweringPods(t *testing.T) {
	_, ip := demoService(t, "echo-l2")
	t.Cleanup(func() {
		if _, err := kubectl("-n", lab.DemoNamespace, "scale", "deployment/echo", "--replicas=3"); err != nil {
			t.Error(err)
		}
		kit.Eventually(t, converge, "back to 3 ready endpoints", func(context.Context) error {
			n, err := readyEndpoints("echo-l2")
			if err == nil && n != 3 {
				err = fmt.Errorf("%d ready endpoints", n)
			}
			return err
		})
	})
	for _, replicas := range []int{5, 1} {
		if _, err := kubectl("-n", lab.DemoNamespace, "scale", "deployment/echo", fmt.Sprintf("--replicas=%d", replicas)); err != nil {
			t.Fatal(err)
		}
		var pods []string
		kit.Eventually(t, converge, fmt.Sprintf("%d ready Pods", replicas), func(context.Context) (err error) {
			pods, err = readyEchoPods()
			if err == nil && len(pods) != replicas {
				err = fmt.Errorf("%d ready: %v", len(pods), pods)
			}
			return err
		})
		// Each connection picks an endpoint at random: 40 requests miss one of 5 Pods with
		// probability 5·0.8⁴⁰ ≈ 7·10⁻⁴, and a miss only means another round.
		kit.Eventually(t, converge, fmt.Sprintf("exactly the %d Pods %v answer", replicas, pods), func(context.Context) error {
			got, err := answering(theLab.ClientL2(), addr80(ip), 40)
			if err == nil && !sameSet(got, pods) {
				err = fmt.Errorf("answering: %v", got)
			}
			return err
		})
	}
}
