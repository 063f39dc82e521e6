// Package soak runs Fairlead's lab (test/lab, agent nodes) for a long time under load and
// faults: clients open new connections to layer 2 and BGP addresses (IPv4 and IPv6), a
// ClusterIP and a NodePort without pause, Services are created, changed and deleted at a
// steady rate, and a schedule drawn from a seed kills the controller and speakers, pauses the
// apiserver, restarts etcd and FRR and cuts node links. Checkers watch for what must never
// happen (an address changed, handed out twice or announced by two nodes) and the run ends
// with a table (Report).
//
// The schedule and the table's arithmetic are pure (this file, tally.go); the rest drives the
// lab.
package soak

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

const (
	KillController Kind = "kill-controller" // SIGKILL fairlead-controller, start it again after Hold
	KillSpeaker    Kind = "kill-speaker"    // SIGKILL one node's speaker, start it again after Hold
	PauseAPIServer Kind = "pause-apiserver" // SIGSTOP kube-apiserver for Hold, then SIGCONT
	RestartEtcd    Kind = "restart-etcd"    // SIGKILL etcd, start it again after Hold
	CutLink        Kind = "cut-link"        // one node's LAN link down for Hold, then up
	RestartFRR     Kind = "restart-frr"     // stop the router's FRR, start it again after Hold
)

// Kinds are every kind of fault, in a fixed order (the schedule shuffles them).
var Kinds = []Kind{KillController, KillSpeaker, PauseAPIServer, RestartEtcd, CutLink, RestartFRR}

// Fault is one entry of a schedule: after Quiet without faults, inject Kind (on Node, 1-based,
// for the kinds that hit one node), undo it after Hold.
type Fault struct {
	Kind  Kind
	Node  int
	Quiet time.Duration
	Hold  time.Duration
}

func (f Fault) String() string {
	if f.Node > 0 {
		return fmt.Sprintf("%s node%d", f.Kind, f.Node)
	}
	return string(f.Kind)
}

// onNode says whether a kind hits one node.
func onNode(k Kind) bool { return k == KillSpeaker || k == CutLink }

// span is a range of durations, both ends included.
type span struct{ min, max time.Duration }

// ScheduleOptions bound a schedule.
type ScheduleOptions struct {
	// Duration is the run's length: the schedule holds whole rounds (every kind once, in a
	// shuffled order) while their estimated length fits in it, and always at least one.
	Duration time.Duration
	// Nodes is the number of nodes a fault may hit.
	Nodes int
	// Quiet is the time without faults before each fault.
	QuietMin, QuietMax time.Duration
	// Pause is how long the apiserver stays stopped.
	PauseMin, PauseMax time.Duration
	// Kinds, when set, are the only kinds a round holds (to replay one kind of fault alone,
	// say the apiserver's pauses); empty means every kind.
	Kinds []Kind
}

// holds are how long each kind of fault lasts before it is undone (the apiserver's comes from
// ScheduleOptions).
var holds = map[Kind]span{
	KillController: {2 * time.Second, 10 * time.Second},
	KillSpeaker:    {2 * time.Second, 10 * time.Second},
	RestartEtcd:    {1 * time.Second, 5 * time.Second},
	CutLink:        {5 * time.Second, 20 * time.Second},
	RestartFRR:     {1 * time.Second, 5 * time.Second},
}

// convergeEstimate is how long the lab takes to settle after a fault, used only to size the
// schedule to the run's duration. Measured: 2–19 s, 10 s on average over 24 faults; with
// 15 s a 20-minute schedule ran 16 minutes, with 8 s it runs about the duration.
const convergeEstimate = 8 * time.Second

// NewSchedule draws a schedule from seed: the same seed and options give the same schedule,
// which is how a run is replayed.
func NewSchedule(seed int64, o ScheduleOptions) []Fault {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x50a4))
	between := func(s span) time.Duration {
		if s.max <= s.min {
			return s.min
		}
		// Whole seconds: a schedule reads better, and nothing here is finer than that.
		secs := int64((s.max - s.min) / time.Second)
		return s.min + time.Duration(rng.Int64N(secs+1))*time.Second
	}
	nodes := max(o.Nodes, 1)
	kinds := Kinds
	if len(o.Kinds) > 0 {
		kinds = o.Kinds
	}
	var out []Fault
	var total time.Duration
	for {
		var round []Fault
		var length time.Duration
		for _, i := range rng.Perm(len(kinds)) {
			k := kinds[i]
			f := Fault{Kind: k, Quiet: between(span{o.QuietMin, o.QuietMax})}
			if k == PauseAPIServer {
				f.Hold = between(span{o.PauseMin, o.PauseMax})
			} else {
				f.Hold = between(holds[k])
			}
			if onNode(k) {
				f.Node = 1 + rng.IntN(nodes)
			}
			round = append(round, f)
			length += f.Quiet + f.Hold + convergeEstimate
		}
		if len(out) > 0 && total+length > o.Duration {
			return out
		}
		out = append(out, round...)
		total += length
	}
}

// FormatSchedule prints a schedule one fault a line, as the run prints it before it starts.
func FormatSchedule(s []Fault) string {
	var b strings.Builder
	for i, f := range s {
		fmt.Fprintf(&b, "%3d  after %-4s %-22s for %s\n", i+1, f.Quiet, f, f.Hold)
	}
	return b.String()
}
