package soak

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/fairlead-lb/fairlead/test/lab"
)

// target is where one probe connects from (a lab namespace) and to.
type target struct {
	from, addr string
}

// probe opens a new connection to one of its targets (in turn) every interval until ctx ends.
type probe struct {
	name    string
	targets []target
}

// Probes names, in the order the table shows them.
const (
	ProbeL2v4      = "l2-v4"
	ProbeL2v6      = "l2-v6"
	ProbeBGPv4     = "bgp-v4"
	ProbeBGPv6     = "bgp-v6"
	ProbeClusterIP = "clusterip"
	ProbeNodePort  = "nodeport"
)

var probeOrder = []string{ProbeL2v4, ProbeL2v6, ProbeBGPv4, ProbeBGPv6, ProbeClusterIP, ProbeNodePort}

// recorder keeps every attempt, and the last answer of each target (convergence asks for one
// after the fault was undone).
type recorder struct {
	mu       sync.Mutex
	attempts []Attempt
	lastOK   map[target]time.Time
	lastErr  map[target]string
}

func newRecorder() *recorder {
	return &recorder{lastOK: map[target]time.Time{}, lastErr: map[target]string{}}
}

func (r *recorder) add(p string, t target, start, end time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := Attempt{Probe: p, Start: start, End: end, OK: err == nil}
	if err == nil {
		r.lastOK[t] = end
	} else {
		r.lastErr[t] = err.Error()
		a.Target, a.Err = t.from+" → "+t.addr, err.Error()
	}
	r.attempts = append(r.attempts, a)
}

// answeredSince returns the targets of ps that have not answered since t, with their last
// error.
func (r *recorder) answeredSince(ps []probe, t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var late []string
	for _, p := range ps {
		for _, x := range p.targets {
			if r.lastOK[x].Before(t) {
				late = append(late, fmt.Sprintf("%s %s→%s (%s)", p.name, x.from, x.addr, r.lastErr[x]))
			}
		}
	}
	if len(late) > 0 {
		return fmt.Errorf("not answering: %s", strings.Join(late, "; "))
	}
	return nil
}

func (r *recorder) snapshot() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Attempt(nil), r.attempts...)
}

// run runs p until ctx ends: a new connection every interval (or as soon as the last one
// gave up, when that took longer), each answered by an echo Pod or failed.
func (p probe) run(ctx context.Context, interval time.Duration, rec *recorder) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		t := p.targets[i%len(p.targets)]
		start := time.Now()
		_, err := request(ctx, t.from, t.addr)
		if ctx.Err() != nil {
			return
		}
		rec.add(p.name, t, start, time.Now(), err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// request is one connection: the echo server must answer with its Pod's name.
func request(ctx context.Context, from, addr string) (string, error) {
	line, err := lab.Request(ctx, from, addr)
	if err != nil {
		return "", err
	}
	if len(strings.Fields(line)) != 2 {
		return "", fmt.Errorf("unexpected answer %q from %s", line, addr)
	}
	return line, nil
}

func hostPort(ip string, port int32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
