package nfttrace

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// kind is the data type of a selector or a set key component.
type kind int

const (
	kAddr4 kind = iota
	kAddr6
	kProto
	kPort
	kMark
	kInt // numgen
	kFibType
	kCtState
	kCtStatus
	kIface
	kVerdict
)

func (k kind) String() string {
	return [...]string{"ipv4_addr", "ipv6_addr", "inet_proto", "inet_service", "mark", "integer", "fib_addrtype",
		"ct_state", "ct_status", "ifname", "verdict"}[k]
}

// value is one datum of a packet or an element: an address, a number or a word.
type value struct {
	a netip.Addr
	n uint64
	s string
}

func (v value) String() string {
	switch {
	case v.a.IsValid():
		return v.a.String()
	case v.s != "":
		return v.s
	}
	return fmt.Sprint(v.n)
}

// match is what an element or a literal accepts: one value, or a prefix of addresses, or an
// interface name pattern.
type match struct {
	p    netip.Prefix
	n    uint64
	s    string
	glob bool // s ends in '*'
}

func (m match) isRange() bool { return m.p.IsValid() && m.p.Bits() < m.p.Addr().BitLen() }

func (m match) matches(v value) bool {
	switch {
	case m.p.IsValid():
		return v.a.IsValid() && m.p.Contains(v.a)
	case m.glob:
		return strings.HasPrefix(v.s, strings.TrimSuffix(m.s, "*"))
	case m.s != "":
		return v.s == m.s
	}
	return !v.a.IsValid() && v.s == "" && v.n == m.n
}

var protocols = map[string]uint64{"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}

func parseValue(k kind, s string) (value, error) {
	m, err := parseMatch(k, s)
	if err != nil {
		return value{}, err
	}
	if m.isRange() || m.glob {
		return value{}, fmt.Errorf("%q: a single %s expected", s, k)
	}
	if m.p.IsValid() {
		return value{a: m.p.Addr()}, nil
	}
	return value{n: m.n, s: m.s}, nil
}

func parseMatch(k kind, s string) (match, error) {
	bad := func() (match, error) { return match{}, fmt.Errorf("%q is not a valid %s", s, k) }
	switch k {
	case kAddr4, kAddr6:
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
			if err == nil && p != p.Masked() {
				return match{}, fmt.Errorf("%q has host bits set", s)
			}
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4() != (k == kAddr4) || p.Addr().Is4In6() {
			return bad()
		}
		return match{p: p}, nil
	case kProto:
		if n, ok := protocols[s]; ok {
			return match{n: n}, nil
		}
		n, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return bad()
		}
		return match{n: n}, nil
	case kPort:
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return bad()
		}
		return match{n: n}, nil
	case kMark, kInt:
		n, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return bad()
		}
		return match{n: n}, nil
	case kFibType:
		if s != "local" && s != "unicast" {
			return bad()
		}
		return match{s: s}, nil
	case kCtState:
		if !map[string]bool{"new": true, "established": true, "related": true, "invalid": true, "untracked": true}[s] {
			return bad()
		}
		return match{s: s}, nil
	case kCtStatus:
		if s != "dnat" && s != "snat" {
			return bad()
		}
		return match{s: s}, nil
	case kIface:
		if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
			return bad()
		}
		s = s[1 : len(s)-1]
		return match{s: s, glob: strings.HasSuffix(s, "*")}, nil
	}
	return bad()
}

// selector is a packet field: ip daddr, meta l4proto, numgen random mod N, ...
type selector struct {
	name string // "ip daddr", "th dport", "numgen", ...
	kind kind
	mod  uint64 // numgen's modulus
}

func (s selector) String() string {
	if s.name == "numgen" {
		return fmt.Sprintf("numgen random mod %d", s.mod)
	}
	return s.name
}

// verdict is accept, drop, return, jump or goto.
type verdict struct {
	kind  string
	chain string
}

func (v *verdict) String() string {
	if v == nil {
		return "<nil>"
	}
	if v.chain != "" {
		return v.kind + " " + v.chain
	}
	return v.kind
}

// Statements of a rule, in order. A rule runs its statements until a match fails.
type stmt interface{ check(*table) error }

// cmpStmt: selectors compared with a literal, an anonymous set or a named set (op "==" or "!=").
type cmpStmt struct {
	sel  []selector
	op   string
	lit  [][]match // alternatives (an anonymous set has several)
	set  string
	mask uint64 // "meta mark & mask == lit"
}

// vmapStmt: a verdict map lookup; no element means the rule does not match.
type vmapStmt struct {
	sel  []selector
	set  string
	anon []element
}

type verdictStmt struct{ v *verdict }

type rejectStmt struct{ with string } // "" (ICMP port unreachable) or "tcp reset"

type masqStmt struct{}

// dnatStmt: to a fixed address and port, or to the data a map gives for the selectors.
type dnatStmt struct {
	family string // ip or ip6
	to     netip.AddrPort
	sel    []selector
	set    string
}

// markStmt: meta mark set meta mark <op> n.
type markStmt struct {
	op string // "|", "^", "&" or "" (set to n)
	n  uint64
}

// updateStmt: update @set { selectors }.
type updateStmt struct {
	set string
	sel []selector
}

func (c *cmpStmt) check(t *table) error {
	if c.set == "" {
		return nil
	}
	s, ok := t.sets[c.set]
	if !ok || s.data != nil {
		return fmt.Errorf("no set %s", c.set)
	}
	return fits(c.sel, s)
}

func (v *vmapStmt) check(t *table) error {
	if v.set == "" {
		return nil
	}
	s, ok := t.sets[v.set]
	if !ok || len(s.data) != 1 || s.data[0] != kVerdict {
		return fmt.Errorf("no verdict map %s", v.set)
	}
	return fits(v.sel, s)
}

func (v *verdictStmt) check(t *table) error {
	if v.v.chain != "" {
		if _, ok := t.chains[v.v.chain]; !ok {
			return fmt.Errorf("no chain %s", v.v.chain)
		}
	}
	return nil
}

func (*rejectStmt) check(*table) error { return nil }
func (*masqStmt) check(*table) error   { return nil }
func (*markStmt) check(*table) error   { return nil }

func (d *dnatStmt) check(t *table) error {
	if d.set == "" {
		return nil
	}
	s, ok := t.sets[d.set]
	if !ok || s.data == nil {
		return fmt.Errorf("no map %s", d.set)
	}
	want := []kind{kAddr4, kPort}
	if d.family == "ip6" {
		want[0] = kAddr6
	}
	if len(s.data) != 2 || s.data[0] != want[0] || s.data[1] != want[1] {
		return fmt.Errorf("map %s gives %v, dnat %s needs an address and a port", d.set, s.data, d.family)
	}
	return fits(d.sel, s)
}

func (u *updateStmt) check(t *table) error {
	s, ok := t.sets[u.set]
	if !ok || s.data != nil {
		return fmt.Errorf("no set %s", u.set)
	}
	if !s.dynamic {
		return fmt.Errorf("set %s is updated from the packet path but has no dynamic flag", u.set)
	}
	return fits(u.sel, s)
}

func fits(sel []selector, s *set) error {
	if len(sel) != len(s.key) {
		return fmt.Errorf("%s has %d key components, the lookup %d", s.name, len(s.key), len(sel))
	}
	for i := range sel {
		if sel[i].kind != s.key[i] {
			return fmt.Errorf("%s: key component %d is %s, the lookup gives %s (%s)", s.name, i, s.key[i], sel[i].kind, sel[i])
		}
	}
	return nil
}

// tokenize splits on spaces and splits off braces and commas.
func tokenize(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		for f != "" {
			switch {
			case f[0] == '{' || f[0] == '}' || f[0] == ',':
				out = append(out, f[:1])
				f = f[1:]
			case strings.HasSuffix(f, ",") || strings.HasSuffix(f, "}"):
				i := strings.IndexAny(f, ",}")
				out = append(out, f[:i])
				f = f[i:]
			default:
				out = append(out, f)
				f = ""
			}
		}
	}
	return out
}

type parser struct {
	toks []string
	i    int
}

func (p *parser) done() bool { return p.i >= len(p.toks) }
func (p *parser) peek() string {
	if p.done() {
		return ""
	}
	return p.toks[p.i]
}
func (p *parser) next() string { t := p.peek(); p.i++; return t }
func (p *parser) accept(words ...string) bool {
	if p.i+len(words) > len(p.toks) {
		return false
	}
	for j, w := range words {
		if p.toks[p.i+j] != w {
			return false
		}
	}
	p.i += len(words)
	return true
}
func (p *parser) expect(words ...string) error {
	if !p.accept(words...) {
		return fmt.Errorf("expected %q at %q", strings.Join(words, " "), strings.Join(p.toks[min(p.i, len(p.toks)):], " "))
	}
	return nil
}

// selector reads one packet field, or reports false.
func (p *parser) selector() (selector, bool, error) {
	for _, s := range []selector{
		{name: "ip saddr", kind: kAddr4}, {name: "ip daddr", kind: kAddr4},
		{name: "ip6 saddr", kind: kAddr6}, {name: "ip6 daddr", kind: kAddr6},
		{name: "meta l4proto", kind: kProto}, {name: "th dport", kind: kPort}, {name: "meta mark", kind: kMark},
		{name: "fib saddr type", kind: kFibType}, {name: "fib daddr type", kind: kFibType},
		{name: "ct state", kind: kCtState}, {name: "ct status", kind: kCtStatus}, {name: "iifname", kind: kIface},
	} {
		if p.accept(strings.Fields(s.name)...) {
			return s, true, nil
		}
	}
	if p.accept("numgen", "random", "mod") {
		n, err := strconv.ParseUint(p.next(), 10, 32)
		if err != nil || n == 0 {
			return selector{}, false, fmt.Errorf("numgen modulus")
		}
		return selector{name: "numgen", kind: kInt, mod: n}, true, nil
	}
	return selector{}, false, nil
}

// selectors reads a concatenation "a . b . c".
func (p *parser) selectors() ([]selector, error) {
	var out []selector
	for {
		s, ok, err := p.selector()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("unknown expression at %q", strings.Join(p.toks[min(p.i, len(p.toks)):], " "))
		}
		out = append(out, s)
		if !p.accept(".") {
			return out, nil
		}
	}
}

func (p *parser) verdict() (*verdict, error) {
	switch w := p.next(); w {
	case "accept", "drop", "return":
		return &verdict{kind: w}, nil
	case "jump", "goto":
		c := p.next()
		if c == "" {
			return nil, fmt.Errorf("%s without a chain", w)
		}
		return &verdict{kind: w, chain: c}, nil
	default:
		return nil, fmt.Errorf("unknown verdict %q", w)
	}
}

// literal reads a concatenated literal for sel.
func (p *parser) literal(sel []selector) ([]match, error) {
	var out []match
	for i, s := range sel {
		if i > 0 {
			if err := p.expect("."); err != nil {
				return nil, err
			}
		}
		m, err := parseMatch(s.kind, p.next())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func parseRule(text string) ([]stmt, error) {
	p := &parser{toks: tokenize(text)}
	var out []stmt
	terminal := false
	for !p.done() {
		if terminal {
			return nil, fmt.Errorf("%q after the rule's verdict", strings.Join(p.toks[p.i:], " "))
		}
		st, term, err := p.statement()
		if err != nil {
			return nil, err
		}
		out = append(out, st)
		terminal = term
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty rule")
	}
	return out, nil
}

// statement reads one statement and reports whether it ends the rule.
func (p *parser) statement() (stmt, bool, error) {
	switch p.peek() {
	case "accept", "drop", "return", "jump", "goto":
		v, err := p.verdict()
		return &verdictStmt{v: v}, true, err
	case "reject":
		p.next()
		r := &rejectStmt{}
		if p.accept("with", "tcp", "reset") {
			r.with = "tcp reset"
		} else if p.peek() == "with" {
			return nil, false, fmt.Errorf("unknown reject form %q", strings.Join(p.toks[p.i:], " "))
		}
		return r, true, nil
	case "masquerade":
		p.next()
		p.accept("fully-random")
		return &masqStmt{}, true, nil
	case "dnat":
		return p.dnat()
	case "update":
		p.next()
		set := strings.TrimPrefix(p.next(), "@")
		if err := p.expect("{"); err != nil {
			return nil, false, err
		}
		sel, err := p.selectors()
		if err != nil {
			return nil, false, err
		}
		if err := p.expect("}"); err != nil {
			return nil, false, err
		}
		return &updateStmt{set: set, sel: sel}, false, nil
	}
	if p.accept("meta", "mark", "set") {
		m := &markStmt{}
		if p.accept("meta", "mark") {
			m.op = p.next()
			if m.op != "|" && m.op != "^" && m.op != "&" {
				return nil, false, fmt.Errorf("mark operator %q", m.op)
			}
		}
		n, err := strconv.ParseUint(p.next(), 0, 32)
		if err != nil {
			return nil, false, fmt.Errorf("mark value: %w", err)
		}
		m.n = n
		return m, false, nil
	}
	sel, err := p.selectors()
	if err != nil {
		return nil, false, err
	}
	if p.accept("vmap") {
		v := &vmapStmt{sel: sel}
		if strings.HasPrefix(p.peek(), "@") {
			v.set = strings.TrimPrefix(p.next(), "@")
			return v, true, nil
		}
		if err := p.expect("{"); err != nil {
			return nil, false, err
		}
		for {
			key, err := p.literal(sel)
			if err != nil {
				return nil, false, err
			}
			if err := p.expect(":"); err != nil {
				return nil, false, err
			}
			vd, err := p.verdict()
			if err != nil {
				return nil, false, err
			}
			v.anon = append(v.anon, element{key: key, verd: vd})
			if p.accept("}") {
				return v, true, nil
			}
			if err := p.expect(","); err != nil {
				return nil, false, err
			}
		}
	}
	c := &cmpStmt{sel: sel, op: "=="}
	if p.accept("&") {
		if len(sel) != 1 || sel[0].kind != kMark {
			return nil, false, fmt.Errorf("bitwise and on %v", sel)
		}
		n, err := strconv.ParseUint(p.next(), 0, 32)
		if err != nil {
			return nil, false, err
		}
		c.mask = n
		if !p.accept("==") && !p.accept("!=") {
			return nil, false, fmt.Errorf("comparison expected after the mask")
		}
		c.op = p.toks[p.i-1]
	} else if p.accept("!=") {
		c.op = "!="
	} else {
		p.accept("==")
	}
	switch {
	case strings.HasPrefix(p.peek(), "@"):
		c.set = strings.TrimPrefix(p.next(), "@")
	case p.accept("{"):
		for {
			m, err := p.literal(sel)
			if err != nil {
				return nil, false, err
			}
			c.lit = append(c.lit, m)
			if p.accept("}") {
				break
			}
			if err := p.expect(","); err != nil {
				return nil, false, err
			}
		}
	default:
		m, err := p.literal(sel)
		if err != nil {
			return nil, false, err
		}
		if c.mask != 0 && (len(m) != 1 || m[0].n&^c.mask != 0) {
			return nil, false, fmt.Errorf("masked comparison with bits outside the mask")
		}
		c.lit = [][]match{m}
	}
	for _, s := range sel {
		if s.kind == kFibType && (c.set != "" || len(c.lit) != 1) {
			return nil, false, fmt.Errorf("fib type compared with a set")
		}
	}
	return c, false, nil
}

func (p *parser) dnat() (stmt, bool, error) {
	p.next()
	d := &dnatStmt{family: p.next()}
	if d.family != "ip" && d.family != "ip6" {
		return nil, false, fmt.Errorf("dnat needs ip or ip6, got %q", d.family)
	}
	if err := p.expect("to"); err != nil {
		return nil, false, err
	}
	if s, ok, err := p.selectorsOrNot(); err != nil {
		return nil, false, err
	} else if ok {
		d.sel = s
		if err := p.expect("map"); err != nil {
			return nil, false, err
		}
		if !strings.HasPrefix(p.peek(), "@") {
			return nil, false, fmt.Errorf("dnat map must be named")
		}
		d.set = strings.TrimPrefix(p.next(), "@")
		return d, true, nil
	}
	ap, err := netip.ParseAddrPort(p.next())
	if err != nil {
		return nil, false, fmt.Errorf("dnat target: %w", err)
	}
	if ap.Addr().Is4() != (d.family == "ip") {
		return nil, false, fmt.Errorf("dnat %s to %s: wrong family", d.family, ap)
	}
	d.to = ap
	return d, true, nil
}

func (p *parser) selectorsOrNot() ([]selector, bool, error) {
	save := p.i
	if _, ok, err := p.selector(); err != nil || !ok {
		p.i = save
		return nil, false, err
	}
	p.i = save
	s, err := p.selectors()
	return s, err == nil, err
}
