package bgp

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/bfd"
)

func bfdProfile(name string, mut ...func(*v1alpha1.BFDProfileSpec)) *v1alpha1.BFDProfile {
	p := &v1alpha1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mut {
		m(&p.Spec)
	}
	return p
}

// A BGPPeer's bfdProfile becomes the BFD settings of its session; an unknown profile or a
// value out of MetalLB's ranges makes only that peer Invalid (with the value named), and
// echoMode only warns.
func TestDesiredBFD(t *testing.T) {
	profiles := []*v1alpha1.BFDProfile{
		bfdProfile("defaults"),
		bfdProfile("fast", func(s *v1alpha1.BFDProfileSpec) {
			s.ReceiveInterval, s.TransmitInterval, s.DetectMultiplier = u32(200), u32(150), u32(5)
			s.PassiveMode, s.MinimumTTL = true, u32(250)
		}),
		bfdProfile("slow-rx", func(s *v1alpha1.BFDProfileSpec) { s.ReceiveInterval = u32(60001) }),
		bfdProfile("mult1", func(s *v1alpha1.BFDProfileSpec) { s.DetectMultiplier = u32(1) }),
		bfdProfile("ttl255", func(s *v1alpha1.BFDProfileSpec) { s.MinimumTTL = u32(255) }),
		bfdProfile("echo", func(s *v1alpha1.BFDProfileSpec) { s.EchoMode = true }),
	}
	withProfile := func(n string) func(*v1alpha1.BGPPeerSpec) {
		return func(s *v1alpha1.BGPPeerSpec) { s.BFDProfile = n }
	}
	for _, c := range []struct {
		name    string
		profile string
		want    BFDSettings
		invalid string
		warning string
	}{
		{name: "none", profile: ""},
		{name: "defaults", profile: "defaults", want: BFDSettings{Profile: "defaults", MinTTL: 254,
			Config: bfd.Config{DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 300 * time.Millisecond, DetectMult: 3}}},
		{name: "set", profile: "fast", want: BFDSettings{Profile: "fast", MinTTL: 250,
			Config: bfd.Config{DesiredMinTx: 150 * time.Millisecond, RequiredMinRx: 200 * time.Millisecond, DetectMult: 5, Passive: true}}},
		{name: "unknown", profile: "nope", invalid: `bfdProfile "nope" not found`},
		{name: "receive out of range", profile: "slow-rx", invalid: `bfdProfile "slow-rx": receiveInterval 60001 out of range 10..60000`},
		{name: "multiplier out of range", profile: "mult1", invalid: `detectMultiplier 1 out of range 2..255`},
		{name: "ttl out of range", profile: "ttl255", invalid: `minimumTtl 255 out of range 1..254`},
		{name: "echo warns", profile: "echo", want: BFDSettings{Profile: "echo", MinTTL: 254,
			Config: bfd.Config{DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 300 * time.Millisecond, DetectMult: 3}},
			warning: "BFDEchoUnsupported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sessions, problems := Desired(Input{Node: testNode, BFDProfiles: profiles, Peers: []*v1alpha1.BGPPeer{
				peer("p", "192.0.2.1", 64500, 64512, withProfile(c.profile)),
				peer("other", "192.0.2.2", 64500, 64512),
			}})
			s := sessions["p"]
			if c.invalid != "" {
				if !strings.Contains(s.Invalid, c.invalid) {
					t.Errorf("Invalid %q, want it to contain %q", s.Invalid, c.invalid)
				}
				if len(problems) != 1 || problems[0].Reason != "InvalidConfig" || problems[0].Name != "p" {
					t.Errorf("problems %+v, want one InvalidConfig on p", problems)
				}
			} else if s.Invalid != "" || s.BFD != c.want {
				t.Errorf("got %+v (invalid %q), want %+v", s.BFD, s.Invalid, c.want)
			}
			if c.warning != "" && (len(problems) != 1 || problems[0].Reason != c.warning) {
				t.Errorf("problems %+v, want %s", problems, c.warning)
			}
			if o := sessions["other"]; o.Invalid != "" || o.BFD.Enabled() {
				t.Errorf("the other peer was affected: %+v", o)
			}
		})
	}
}
