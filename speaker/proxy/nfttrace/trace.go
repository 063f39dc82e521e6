package nfttrace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Packet is the first packet of a new connection (ct state new).
type Packet struct {
	Src, Dst netip.Addr
	Proto    string // tcp, udp or sctp
	DPort    uint16
	// Local: sent by a process of the node (output hook); else it arrives on InIface
	// (prerouting).
	Local   bool
	InIface string
}

func (p Packet) String() string {
	from := "from " + p.Src.String()
	if p.Local {
		from += " (node)"
	} else if p.InIface != "" {
		from += " on " + p.InIface
	}
	return fmt.Sprintf("%s %s to %s", p.Proto, from, netip.AddrPortFrom(p.Dst, p.DPort))
}

// Node is what the rules ask the kernel about the node: fib ... type local.
type Node struct {
	// Addrs are the node's own addresses; loopback addresses are local too.
	Addrs []netip.Addr
}

func (n Node) local(a netip.Addr) bool { return a.IsLoopback() || slices.Contains(n.Addrs, a) }

// Verdict is the packet's fate.
type Verdict string

const (
	Accept Verdict = "accept"
	Drop   Verdict = "drop"
	Reject Verdict = "reject"
)

// Outcome is one way a packet goes through the rules: there is one per choice of every
// numgen on its path.
type Outcome struct {
	Verdict Verdict
	// RejectWith is "tcp reset" or "icmp" for a rejection.
	RejectWith string
	// DNAT is the destination the packet was rewritten to, if it was.
	DNAT netip.AddrPort
	// Masquerade: the masquerade statement ran in postrouting.
	Masquerade bool
	// Delivered: the destination, after DNAT, is the node itself (input, not forward).
	Delivered bool
	// Path lists the chains entered, for messages.
	Path []string
	// updates are the affinity sets this connection adds its source to (see Apply).
	updates []string
	src     value
}

func (o Outcome) String() string {
	var s string
	switch {
	case o.Verdict == Reject:
		s = "reject (" + o.RejectWith + ")"
	case o.Verdict == Drop:
		s = "drop"
	case o.DNAT.IsValid():
		s = "dnat " + o.DNAT.String()
	case o.Delivered:
		s = "accept (to the node)"
	default:
		s = "accept"
	}
	if o.Masquerade {
		s += " masquerade"
	}
	return s
}

// Tracer follows packets through a Ruleset on a node.
type Tracer struct {
	Rules *Ruleset
	Node  Node
}

// Trace returns every outcome the packet can have, one per path through the numgen
// choices, in the order of those choices. The ruleset is not changed; Apply records a
// connection's affinity updates.
func (tr *Tracer) Trace(p Packet) ([]Outcome, error) {
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
		return nil, fmt.Errorf("packet %v: addresses of one family needed", p)
	}
	if _, ok := protocols[p.Proto]; !ok || p.Proto == "icmp" || p.Proto == "icmpv6" {
		return nil, fmt.Errorf("packet %v: protocol %q is not traced", p, p.Proto)
	}
	var out []Outcome
	var explore func(prefix []int) error
	explore = func(prefix []int) error {
		r := &run{tr: tr, pkt: p, choices: prefix}
		o, err := r.packet()
		if err != nil {
			return fmt.Errorf("%v: %w (path %s)", p, err, strings.Join(r.out.Path, " → "))
		}
		out = append(out, o)
		// r.taken holds every choice made (prefix, then zeros); branch on the later ones,
		// the last first, so that the outcomes come in the order of the choices.
		for i := len(r.taken) - 1; i >= len(prefix); i-- {
			for c := 1; c < r.mods[i]; c++ {
				next := append(slices.Clone(r.taken[:i]), c)
				if err := explore(next); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := explore(nil); err != nil {
		return nil, err
	}
	return out, nil
}

// Apply records that o's connection happened: its source joins the affinity sets its path
// updated, so the next packet from that source finds them.
func (tr *Tracer) Apply(o Outcome) {
	for _, s := range o.updates {
		if !slices.Contains(tr.Rules.affinity[s], o.src) {
			tr.Rules.affinity[s] = append(tr.Rules.affinity[s], o.src)
		}
	}
}

// run is one path of one packet.
type run struct {
	tr      *Tracer
	pkt     Packet
	choices []int
	taken   []int
	mods    []int
	mark    uint64
	dnatted bool
	out     Outcome
	steps   int
}

type frame struct {
	c *chain
	i int
}

func hookChains(rs *Ruleset, hook string) []*chain {
	var out []*chain
	for _, t := range rs.tables {
		for _, c := range t.chains {
			if c.base && c.hook == hook {
				out = append(out, c)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *chain) int { return cmp.Compare(a.prio, b.prio) })
	return out
}

func (r *run) packet() (Outcome, error) {
	hooks := []string{"prerouting"}
	if r.pkt.Local {
		hooks = []string{"output"}
	}
	for len(hooks) > 0 {
		hook := hooks[0]
		hooks = hooks[1:]
		for _, c := range hookChains(r.tr.Rules, hook) {
			done, err := r.base(c)
			if err != nil || done {
				return r.out, err
			}
		}
		switch hook {
		case "prerouting":
			// The routing decision, on the address DNAT may have changed.
			if r.tr.Node.local(r.pkt.Dst) {
				r.out.Delivered = true
				hooks = append(hooks, "input")
			} else {
				hooks = append(hooks, "forward", "postrouting")
			}
		case "output":
			r.out.Delivered = r.tr.Node.local(r.pkt.Dst)
			hooks = append(hooks, "postrouting")
		}
	}
	r.out.Verdict = Accept
	return r.out, nil
}

// base runs a base chain; done means the packet's fate is settled (dropped or rejected).
func (r *run) base(bc *chain) (bool, error) {
	tbl := r.table(bc)
	stack := []frame{{c: bc}}
	r.out.Path = append(r.out.Path, bc.name)
	for len(stack) > 0 {
		if r.steps++; r.steps > 100000 {
			return false, fmt.Errorf("rule loop")
		}
		f := &stack[len(stack)-1]
		if f.i >= len(f.c.rules) {
			stack = stack[:len(stack)-1]
			continue
		}
		rl := f.c.rules[f.i]
		f.i++
		v, err := r.rule(tbl, bc, rl)
		if err != nil {
			return false, fmt.Errorf("chain %s, rule %q: %w", f.c.name, rl.text, err)
		}
		if v == nil {
			continue
		}
		switch v.kind {
		case "accept":
			return false, nil
		case "drop":
			r.out.Verdict = Drop
			return true, nil
		case "reject":
			r.out.Verdict = Reject
			return true, nil
		case "return":
			stack = stack[:len(stack)-1]
		case "jump", "goto":
			c, ok := tbl.chains[v.chain]
			if !ok || c.base {
				return false, fmt.Errorf("%s to %s: no such regular chain", v.kind, v.chain)
			}
			if len(stack) > 16 {
				return false, fmt.Errorf("jumps nest deeper than 16")
			}
			r.out.Path = append(r.out.Path, c.name)
			if v.kind == "goto" {
				stack = stack[:len(stack)-1]
			}
			stack = append(stack, frame{c: c})
		}
	}
	// The base chains' policy: accept.
	return false, nil
}

func (r *run) table(c *chain) *table {
	for _, t := range r.tr.Rules.tables {
		if t.chains[c.name] == c {
			return t
		}
	}
	return nil
}

// rule evaluates one rule: nil when it does not match or ends without a verdict.
func (r *run) rule(t *table, bc *chain, rl *rule) (*verdict, error) {
	for _, st := range rl.stmts {
		switch st := st.(type) {
		case *cmpStmt:
			ok, err := r.cmp(t, st)
			if err != nil || !ok {
				return nil, err
			}
		case *vmapStmt:
			key, ok, err := r.eval(st.sel)
			if err != nil || !ok {
				return nil, err
			}
			elems := st.anon
			if st.set != "" {
				elems = t.sets[st.set].elems
			}
			e, found := lookup(elems, key)
			if !found {
				return nil, nil
			}
			return e.verd, nil
		case *verdictStmt:
			return st.v, nil
		case *rejectStmt:
			if bc.typ != "filter" || bc.hook == "postrouting" {
				return nil, fmt.Errorf("reject in a %s chain on %s", bc.typ, bc.hook)
			}
			r.out.RejectWith = "icmp"
			if st.with != "" {
				if r.pkt.Proto != "tcp" {
					return nil, fmt.Errorf("reject with tcp reset on a %s packet", r.pkt.Proto)
				}
				r.out.RejectWith = st.with
			}
			return &verdict{kind: "reject"}, nil
		case *masqStmt:
			if bc.typ != "nat" || bc.hook != "postrouting" {
				return nil, fmt.Errorf("masquerade in a %s chain on %s", bc.typ, bc.hook)
			}
			r.out.Masquerade = true
			return &verdict{kind: "accept"}, nil
		case *dnatStmt:
			if bc.typ != "nat" || (bc.hook != "prerouting" && bc.hook != "output") {
				return nil, fmt.Errorf("dnat in a %s chain on %s", bc.typ, bc.hook)
			}
			if (st.family == "ip") != r.pkt.Dst.Is4() {
				return nil, nil // dnat ip only applies to IPv4 packets in an inet table
			}
			to := st.to
			if st.set != "" {
				key, ok, err := r.eval(st.sel)
				if err != nil || !ok {
					return nil, err
				}
				e, found := lookup(t.sets[st.set].elems, key)
				if !found {
					// The kernel's lookup fails and the rule stops, as a failed match.
					return nil, nil
				}
				to = netip.AddrPortFrom(e.data[0].a, uint16(e.data[1].n))
			}
			r.pkt.Dst, r.pkt.DPort, r.dnatted = to.Addr(), to.Port(), true
			r.out.DNAT = to
			return &verdict{kind: "accept"}, nil
		case *markStmt:
			switch st.op {
			case "|":
				r.mark |= st.n
			case "^":
				r.mark ^= st.n
			case "&":
				r.mark &= st.n
			default:
				r.mark = st.n
			}
		case *updateStmt:
			key, ok, err := r.eval(st.sel)
			if err != nil || !ok {
				return nil, err
			}
			r.out.updates = append(r.out.updates, st.set)
			r.out.src = key[0]
		default:
			return nil, fmt.Errorf("statement %T", st)
		}
	}
	return nil, nil
}

func lookup(elems []element, key []value) (element, bool) {
	for _, e := range elems {
		if matchAll(e.key, key) {
			return e, true
		}
	}
	return element{}, false
}

func matchAll(ms []match, vs []value) bool {
	for i := range ms {
		if !ms[i].matches(vs[i]) {
			return false
		}
	}
	return true
}

func (r *run) cmp(t *table, c *cmpStmt) (bool, error) {
	key, ok, err := r.eval(c.sel)
	if err != nil || !ok {
		// A field the packet lacks (ip daddr of an IPv6 packet) fails even a != match,
		// as nft's implicit protocol dependency does.
		return false, err
	}
	if c.mask != 0 {
		key[0].n &= c.mask
	}
	var found bool
	switch {
	case c.set != "":
		_, found = lookup(t.sets[c.set].elems, key)
		if !found && r.affinityHas(c.set, key) {
			found = true
		}
	default:
		for _, l := range c.lit {
			if matchAll(l, key) {
				found = true
				break
			}
		}
	}
	return found == (c.op == "=="), nil
}

func (r *run) affinityHas(set string, key []value) bool {
	return len(key) == 1 && slices.Contains(r.tr.Rules.affinity[set], key[0])
}

// eval reads the selectors from the packet; ok is false when the packet has no such field.
func (r *run) eval(sel []selector) ([]value, bool, error) {
	out := make([]value, 0, len(sel))
	p := r.pkt
	for _, s := range sel {
		var v value
		switch s.name {
		case "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr":
			if strings.HasPrefix(s.name, "ip6") == p.Dst.Is4() {
				return nil, false, nil
			}
			v.a = p.Dst
			if strings.HasSuffix(s.name, "saddr") {
				v.a = p.Src
			}
		case "meta l4proto":
			v.n = protocols[p.Proto]
		case "th dport":
			v.n = uint64(p.DPort)
		case "meta mark":
			v.n = r.mark
		case "fib saddr type", "fib daddr type":
			a := p.Dst
			if s.name == "fib saddr type" {
				a = p.Src
			}
			v.s = "unicast"
			if r.tr.Node.local(a) {
				v.s = "local"
			}
		case "ct state":
			v.s = "new"
		case "ct status":
			v.s = "-"
			if r.dnatted {
				v.s = "dnat"
			}
		case "iifname":
			if p.Local {
				return nil, false, nil
			}
			v.s = p.InIface
		case "numgen":
			v.n = uint64(r.choose(int(s.mod)))
		default:
			return nil, false, fmt.Errorf("selector %s", s)
		}
		out = append(out, v)
	}
	return out, true, nil
}

// choose takes the next numgen choice: the prescribed one, else 0.
func (r *run) choose(mod int) int {
	i := len(r.taken)
	c := 0
	if i < len(r.choices) {
		c = r.choices[i]
	}
	r.taken = append(r.taken, c)
	r.mods = append(r.mods, mod)
	return c
}
