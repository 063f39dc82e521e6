package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/lab"
)

const (
	speakerJob     = "fairlead-speaker-metrics" // the chart's default speakerJob
	speakerMissing = "FairleadSpeakersMissing"
)

// The lab's Prometheus, asked through the relay as a user would, scrapes the controller and
// every speaker with the labels the chart's ServiceMonitors give them and evaluates the chart's
// rules with the lab's short for: durations. SIGKILLing a speaker makes
// FairleadSpeakersMissing fire; starting it again resolves it.
func TestSpeakerKillFiresAlert(t *testing.T) {
	kit.Eventually(t, converge, "Prometheus scrapes the controller and every speaker", func(context.Context) error {
		targets, err := theLab.PrometheusTargets(ctx)
		if err != nil {
			return err
		}
		var nodes []string
		controllers := 0
		for _, tg := range targets {
			if tg.Health != "up" {
				return fmt.Errorf("target %s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError)
			}
			if tg.Labels["namespace"] != lab.SpeakerNamespace {
				return fmt.Errorf("target %s has labels %v", tg.ScrapeURL, tg.Labels)
			}
			switch tg.Labels["job"] {
			case speakerJob:
				nodes = append(nodes, tg.Labels["node"])
			case "fairlead-controller-metrics":
				controllers++
			default:
				return fmt.Errorf("target %s of job %q", tg.ScrapeURL, tg.Labels["job"])
			}
		}
		slices.Sort(nodes)
		if controllers != 1 || !slices.Equal(nodes, allNodeNames()) {
			return fmt.Errorf("%d controller targets, speaker targets on nodes %q", controllers, nodes)
		}
		return nil
	})
	groups, err := theLab.PrometheusRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var loaded []string
	for _, g := range groups {
		for _, r := range g.Rules {
			loaded = append(loaded, r.Name)
			if r.Name == speakerMissing && r.Duration != 2 {
				t.Errorf("%s waits %gs, want the lab's speakersMissingFor of 2s", r.Name, r.Duration)
			}
		}
	}
	if len(loaded) < 12 || !slices.Contains(loaded, speakerMissing) {
		t.Fatalf("Prometheus evaluates %v, want the chart's rules", loaded)
	}
	kit.Eventually(t, converge, speakerMissing+" inactive before the kill", func(context.Context) error { return alertState(speakerMissing, "") })

	// Not the layer 2 address's owner: the address stays put, so the other tests are undisturbed.
	_, ip := demoService(t, "echo-l2")
	owner, err := announcedBy("echo-l2", ip)
	if err != nil {
		t.Fatal(err)
	}
	var victim lab.Node
	for _, n := range theLab.Nodes() {
		if !slices.Contains(owner, n.Name) {
			victim = n
		}
	}
	t.Logf("killing %s's speaker", victim.Name)
	if err := theLab.KillSpeaker(victim); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = theLab.StartSpeaker(victim)
		}
	})
	kit.Eventually(t, converge, speakerMissing+" fires", func(context.Context) error { return alertState(speakerMissing, "firing") })

	restarted = true
	if err := theLab.StartSpeaker(victim); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, converge, speakerMissing+" resolved", func(context.Context) error { return alertState(speakerMissing, "") })
	_, bgpIP := demoService(t, "echo-bgp")
	kit.Eventually(t, converge, victim.Name+" a BGP next hop again", func(context.Context) error {
		hops, err := routerHops(bgpIP)
		if err == nil && !slices.Equal(hops, allNodeNames()) {
			err = fmt.Errorf("BGP next hops %v", hops)
		}
		return err
	})

	// `fairlead-lab status` says where Prometheus is and what it sees.
	want := fmt.Sprintf("prometheus: %s (through the relay): 4 of 4 targets up; alerts firing:", theLab.PrometheusURL())
	kit.Eventually(t, converge, "fairlead-lab status shows Prometheus", func(context.Context) error {
		out, err := exec.Command(filepath.Join(theLab.Bin, "fairlead-lab"), "status", "--prefix", theLab.Prefix,
			"--state", theLab.State, "--prometheus-port", fmt.Sprint(theLab.PrometheusPort)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fairlead-lab status: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), want) {
			return fmt.Errorf("fairlead-lab status lacks %q:\n%s", want, out)
		}
		return nil
	})
}

// alertState checks that alert name is in state ("pending", "firing"), or not active at all
// ("").
func alertState(name, state string) error {
	alerts, err := theLab.PrometheusAlerts(ctx)
	if err != nil {
		return err
	}
	got := ""
	for _, a := range alerts {
		if a.Labels["alertname"] == name {
			got = a.State
			if a.Labels["namespace"] != lab.SpeakerNamespace || a.Labels["severity"] != "warning" {
				return fmt.Errorf("%s has labels %v", name, a.Labels)
			}
		}
	}
	if got != state {
		return fmt.Errorf("%s is %q (active alerts: %v)", name, got, alerts)
	}
	return nil
}
