package soak

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// addressChecker reads every Service and ServiceAnnouncement each tick and records what must
// never happen: a Service losing an address it held (changed), two Services holding one
// address at once (handed out twice), and an address that ServiceAnnouncements list as
// announced by layer 2 from two nodes at once. While the apiserver is away it just waits.
type addressChecker struct {
	cs kubernetes.Interface
	cl client.Client

	mu        sync.Mutex
	held      map[types.UID]map[string]bool // every address each Service has held
	names     map[types.UID]string
	changed   map[string]bool // uid/address, once each
	dup       map[string]bool // address + holders, once each
	announced map[string]bool // double announcements going on now, by address + nodes
	l2v4      []netip.Addr    // the layer 2 IPv4 addresses held now (for the ARP observer)
	events    struct{ changed, dup, announced []Event }
}

func newAddressChecker(cs kubernetes.Interface, cl client.Client) *addressChecker {
	return &addressChecker{cs: cs, cl: cl, held: map[types.UID]map[string]bool{}, names: map[types.UID]string{},
		changed: map[string]bool{}, dup: map[string]bool{}, announced: map[string]bool{}}
}

func (c *addressChecker) run(ctx context.Context, every time.Duration, l2 netip.Prefix) {
	for {
		c.tick(ctx, l2)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (c *addressChecker) tick(ctx context.Context, l2 netip.Prefix) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svcs, err := c.cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	holders := map[string][]string{}
	var l2v4 []netip.Addr
	for i := range svcs.Items {
		s := &svcs.Items[i]
		ips := ingressIPs(s)
		if len(ips) == 0 {
			continue
		}
		key := s.Namespace + "/" + s.Name
		c.names[s.UID] = key
		seen := c.held[s.UID]
		if seen == nil {
			seen = map[string]bool{}
			c.held[s.UID] = seen
		}
		// An address, once held, stays until the Service lets go of all of them (deleted,
		// no longer a LoadBalancer): one missing while others remain is a changed address.
		for ip := range seen {
			if !slices.Contains(ips, ip) && !c.changed[string(s.UID)+"/"+ip] {
				c.changed[string(s.UID)+"/"+ip] = true
				c.events.changed = append(c.events.changed, Event{At: now, What: fmt.Sprintf("%s held %s, now %v", key, ip, ips)})
			}
		}
		for _, ip := range ips {
			seen[ip] = true
			holders[ip] = append(holders[ip], key)
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() && l2.Contains(a) {
				l2v4 = append(l2v4, a)
			}
		}
	}
	for ip, hs := range holders {
		if len(hs) > 1 {
			sort.Strings(hs)
			k := ip + " " + strings.Join(hs, ",")
			if !c.dup[k] {
				c.dup[k] = true
				c.events.dup = append(c.events.dup, Event{At: now, What: fmt.Sprintf("%s held by %s", ip, strings.Join(hs, " and "))})
			}
		}
	}
	c.l2v4 = l2v4
	c.mu.Unlock()

	var anns v1alpha1.ServiceAnnouncementList
	if err := c.cl.List(ctx, &anns); err != nil {
		return
	}
	nodes := map[string][]string{}
	for _, a := range anns.Items {
		for _, x := range a.Status.Announcements {
			if x.Protocol == v1alpha1.ProtocolARP || x.Protocol == v1alpha1.ProtocolNDP {
				nodes[x.IP] = append(nodes[x.IP], x.Node)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now = time.Now()
	going := map[string]bool{}
	for ip, ns := range nodes {
		slices.Sort(ns)
		ns = slices.Compact(ns)
		if len(ns) < 2 {
			continue
		}
		// One event per episode: the same address listed by the same nodes on the next
		// tick is the same double announcement.
		k := ip + " " + strings.Join(ns, ",")
		going[k] = true
		if !c.announced[k] {
			c.events.announced = append(c.events.announced, Event{At: now, What: fmt.Sprintf("%s announced by %s", ip, strings.Join(ns, " and "))})
		}
	}
	c.announced = going
}

func (c *addressChecker) l2Addresses() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.l2v4)
}

func ingressIPs(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}
