package soak

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/sys/unix"
)

// arpObserver asks, from a namespace on the nodes' LAN, who has each layer 2 address, and
// records every address answered from two MACs in one round (one event per episode).
type arpObserver struct {
	mu     sync.Mutex
	events []Event
}

// run enters namespace ns on a thread of its own, for good (the thread is retired when the
// goroutine ends, never reused elsewhere), and asks every interval about the addresses
// addrs returns, waiting wait for the answers.
func (o *arpObserver) run(ctx context.Context, ns, dev string, every, wait time.Duration, addrs func() []netip.Addr) error {
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		c, err := dialARPIn(ns, dev)
		ready <- err
		if err != nil {
			return
		}
		defer c.Close()
		going := map[string]bool{}
		for ctx.Err() == nil {
			going = o.round(c, addrs(), wait, going)
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return <-ready
}

func dialARPIn(ns, dev string) (*arp.Client, error) {
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("entering %s: %w", ns, err)
	}
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", dev, ns, err)
	}
	return arp.Dial(ifi)
}

// round sends one request for each address and collects the replies until wait passes.
func (o *arpObserver) round(c *arp.Client, addrs []netip.Addr, wait time.Duration, was map[string]bool) map[string]bool {
	if len(addrs) == 0 {
		return was
	}
	for _, a := range addrs {
		_ = c.Request(a)
	}
	macs := map[netip.Addr][]string{}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		p, _, err := c.Read()
		if err != nil {
			break // the deadline
		}
		// Only answers to this observer's requests: a new owner's gratuitous ARP (target
		// broadcast) arriving just after the old owner answered is a failover, not two
		// nodes answering at once.
		if p.Operation == arp.OperationReply && slices.Contains(addrs, p.SenderIP) &&
			bytes.Equal(p.TargetHardwareAddr, c.HardwareAddr()) && !isBroadcast(p.TargetHardwareAddr) {
			macs[p.SenderIP] = append(macs[p.SenderIP], p.SenderHardwareAddr.String())
		}
	}
	now := time.Now()
	going := map[string]bool{}
	for ip, ms := range macs {
		slices.Sort(ms)
		ms = slices.Compact(ms)
		if len(ms) < 2 {
			continue
		}
		k := ip.String() + " " + strings.Join(ms, ",")
		going[k] = true
		if !was[k] {
			o.mu.Lock()
			o.events = append(o.events, Event{At: now, What: fmt.Sprintf("ARP for %s answered by %s", ip, strings.Join(ms, " and "))})
			o.mu.Unlock()
		}
	}
	return going
}

func isBroadcast(mac net.HardwareAddr) bool { return bytes.Equal(mac, ethernet.Broadcast) }

func (o *arpObserver) snapshot() []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events)
}
