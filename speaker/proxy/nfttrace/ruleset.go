// Package nfttrace follows a packet through nftables rules without a kernel: it reads the nft
// scripts the proxy writes (nftsync's full and partial syncs), keeps the tables they build,
// and tells what the rules do to one new connection's first packet: DNAT to which endpoints,
// masqueraded or not, accepted, dropped or rejected. It understands exactly the rule forms the
// proxy emits and refuses anything else with an error, so a new form cannot pass a test by
// being ignored. One root test (kernel_test.go) holds its answers against the kernel's.
package nfttrace

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Ruleset is the state a sequence of nft scripts leaves, for the inet family.
type Ruleset struct {
	tables map[string]*table
	// affinity remembers the addresses "update @set" statements added (see Apply).
	affinity map[string][]value
}

type table struct {
	name   string
	chains map[string]*chain
	sets   map[string]*set
}

type chain struct {
	name  string
	base  bool
	typ   string // filter, nat
	hook  string // prerouting, input, forward, output, postrouting
	prio  int
	rules []*rule
}

type rule struct {
	text  string
	stmts []stmt
}

// set is a named set or map. Keys have one kind per concatenated component.
type set struct {
	name     string
	key      []kind
	data     []kind // nil for a set; {kVerdict} for a verdict map
	interval bool
	dynamic  bool
	timeout  time.Duration
	elems    []element
}

type element struct {
	key  []match // each component: a value or (interval sets) a prefix
	data []value
	verd *verdict
}

// New returns an empty ruleset.
func New() *Ruleset {
	return &Ruleset{tables: map[string]*table{}, affinity: map[string][]value{}}
}

// Load applies an nft script (nft -f syntax, one command per line) as nft would: all or
// nothing. Any command, object or rule form the tracer does not know is an error.
func (rs *Ruleset) Load(script string) error {
	next := rs.clone()
	for i, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := next.command(line); err != nil {
			return fmt.Errorf("line %d: %q: %w", i+1, line, err)
		}
	}
	if err := next.check(); err != nil {
		return err
	}
	*rs = *next
	return nil
}

func (rs *Ruleset) clone() *Ruleset {
	out := &Ruleset{tables: map[string]*table{}, affinity: map[string][]value{}}
	for k, v := range rs.affinity {
		out.affinity[k] = slices.Clone(v)
	}
	for n, t := range rs.tables {
		nt := &table{name: n, chains: map[string]*chain{}, sets: map[string]*set{}}
		for cn, c := range t.chains {
			cc := *c
			cc.rules = slices.Clone(c.rules)
			nt.chains[cn] = &cc
		}
		for sn, s := range t.sets {
			ss := *s
			ss.elems = slices.Clone(s.elems)
			nt.sets[sn] = &ss
		}
		out.tables[n] = nt
	}
	return out
}

// command applies one line: "<verb> <object> inet <table> [<name> [rest]]".
func (rs *Ruleset) command(line string) error {
	f := strings.Fields(line)
	if len(f) < 4 {
		return fmt.Errorf("too short")
	}
	verb, obj, fam, tname := f[0], f[1], f[2], f[3]
	if fam != "inet" {
		return fmt.Errorf("family %q: only inet tables are traced", fam)
	}
	if obj == "table" {
		switch verb {
		case "add":
			if _, ok := rs.tables[tname]; !ok {
				rs.tables[tname] = &table{name: tname, chains: map[string]*chain{}, sets: map[string]*set{}}
			}
			rest := strings.TrimSpace(strings.Join(f[4:], " "))
			if rest != "" && !(strings.HasPrefix(rest, "{ comment ") && strings.HasSuffix(rest, "; }")) {
				return fmt.Errorf("unknown table options %q", rest)
			}
			return nil
		case "delete":
			if _, ok := rs.tables[tname]; !ok {
				return fmt.Errorf("no table %s", tname)
			}
			delete(rs.tables, tname)
			return nil
		case "flush":
			t, ok := rs.tables[tname]
			if !ok {
				return fmt.Errorf("no table %s", tname)
			}
			// Not "chain flush" per chain: nft's table flush also empties the sets and maps.
			for _, c := range t.chains {
				c.rules = nil
			}
			for _, s := range t.sets {
				s.elems = nil
			}
			return nil
		}
		return fmt.Errorf("unknown command %q", verb)
	}
	t, ok := rs.tables[tname]
	if !ok {
		return fmt.Errorf("no table %s", tname)
	}
	if len(f) < 5 {
		return fmt.Errorf("no object name")
	}
	name := f[4]
	// What follows the name, verbatim (rules keep their spacing for messages).
	rest := strings.TrimSpace(line[strings.Index(line, " "+name)+len(name)+1:])
	switch obj + " " + verb {
	case "chain add":
		return t.addChain(name, rest)
	case "chain flush":
		c, ok := t.chains[name]
		if !ok {
			return fmt.Errorf("no chain %s", name)
		}
		c.rules = nil
		return nil
	case "chain delete":
		if _, ok := t.chains[name]; !ok {
			return fmt.Errorf("no chain %s", name)
		}
		delete(t.chains, name)
		return nil
	case "rule add":
		c, ok := t.chains[name]
		if !ok {
			return fmt.Errorf("no chain %s", name)
		}
		stmts, err := parseRule(rest)
		if err != nil {
			return err
		}
		c.rules = append(c.rules, &rule{text: rest, stmts: stmts})
		return nil
	case "set add", "map add":
		return t.addSet(name, obj == "map", rest)
	case "set flush", "map flush":
		s, err := t.set(name, obj == "map")
		if err != nil {
			return err
		}
		s.elems = nil
		return nil
	case "set delete", "map delete":
		if _, err := t.set(name, obj == "map"); err != nil {
			return err
		}
		delete(t.sets, name)
		return nil
	case "element add", "element delete":
		s, ok := t.sets[name]
		if !ok {
			return fmt.Errorf("no set or map %s", name)
		}
		return s.elements(verb, rest)
	}
	return fmt.Errorf("unknown command %q %q", verb, obj)
}

func (t *table) set(name string, isMap bool) (*set, error) {
	s, ok := t.sets[name]
	if !ok || (s.data != nil) != isMap {
		return nil, fmt.Errorf("no %s %s", map[bool]string{true: "map", false: "set"}[isMap], name)
	}
	return s, nil
}

func (t *table) addChain(name, rest string) error {
	c := &chain{name: name}
	if rest != "" {
		// { type nat hook prerouting priority -100 ; }
		f := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(rest, "{"), "}"))
		if len(f) != 7 || f[0] != "type" || f[2] != "hook" || f[4] != "priority" || f[6] != ";" {
			return fmt.Errorf("unknown chain declaration %q", rest)
		}
		c.base, c.typ, c.hook = true, f[1], f[3]
		if c.typ != "filter" && c.typ != "nat" {
			return fmt.Errorf("chain type %q", c.typ)
		}
		if !slices.Contains([]string{"prerouting", "input", "forward", "output", "postrouting"}, c.hook) {
			return fmt.Errorf("hook %q", c.hook)
		}
		p, err := priority(f[5])
		if err != nil {
			return err
		}
		c.prio = p
	}
	if old, ok := t.chains[name]; ok {
		// nft: adding an existing chain is a no-op, unless it asks for another hook.
		if old.base != c.base || old.typ != c.typ || old.hook != c.hook || old.prio != c.prio {
			return fmt.Errorf("chain %s exists with another declaration", name)
		}
		return nil
	}
	t.chains[name] = c
	return nil
}

func priority(s string) (int, error) {
	named := map[string]int{"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
	if p, ok := named[s]; ok {
		return p, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("priority %q", s)
	}
	return p, nil
}

// addSet reads "{ type A . B [: C] ; [flags f,g ;] [timeout 60s ;] }" or "{ typeof expr [: expr] ; }".
func (t *table) addSet(name string, isMap bool, rest string) error {
	if !strings.HasPrefix(rest, "{") || !strings.HasSuffix(rest, "}") {
		return fmt.Errorf("no declaration")
	}
	s := &set{name: name}
	for _, part := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(rest, "{"), "}"), ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		word, arg, _ := strings.Cut(part, " ")
		switch word {
		case "type", "typeof":
			keyText, dataText, hasData := strings.Cut(arg, " : ")
			if hasData != isMap {
				return fmt.Errorf("%q: a map has data, a set none", part)
			}
			kinds := typeKinds
			if word == "typeof" {
				kinds = typeofKinds
			}
			var err error
			if s.key, err = kinds(keyText); err != nil {
				return err
			}
			if hasData {
				if dataText == "verdict" {
					s.data = []kind{kVerdict}
				} else if s.data, err = kinds(dataText); err != nil {
					return err
				}
			}
		case "flags":
			for _, fl := range strings.Split(arg, ",") {
				switch strings.TrimSpace(fl) {
				case "interval":
					s.interval = true
				case "dynamic":
					s.dynamic = true
				case "timeout":
				default:
					return fmt.Errorf("set flag %q", fl)
				}
			}
		case "timeout":
			d, err := time.ParseDuration(arg)
			if err != nil {
				return fmt.Errorf("timeout %q", arg)
			}
			s.timeout = d
		default:
			return fmt.Errorf("unknown set option %q", part)
		}
	}
	if s.key == nil {
		return fmt.Errorf("set %s has no type", name)
	}
	if old, ok := t.sets[name]; ok {
		if !slices.Equal(old.key, s.key) || !slices.Equal(old.data, s.data) || old.interval != s.interval {
			return fmt.Errorf("%s exists with another type", name)
		}
		return nil
	}
	t.sets[name] = s
	return nil
}

func typeKinds(text string) ([]kind, error) {
	names := map[string]kind{"ipv4_addr": kAddr4, "ipv6_addr": kAddr6, "inet_proto": kProto, "inet_service": kPort, "mark": kMark}
	var out []kind
	for _, n := range strings.Split(text, " . ") {
		k, ok := names[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("unknown data type %q", n)
		}
		out = append(out, k)
	}
	return out, nil
}

func typeofKinds(text string) ([]kind, error) {
	toks := tokenize(text)
	p := &parser{toks: toks}
	sel, err := p.selectors()
	if err != nil {
		return nil, err
	}
	if !p.done() {
		return nil, fmt.Errorf("typeof %q: unexpected %q", text, p.peek())
	}
	var out []kind
	for _, s := range sel {
		out = append(out, s.kind)
	}
	return out, nil
}

// elements adds or deletes "{ k [: v], ... }".
func (s *set) elements(verb, rest string) error {
	if !strings.HasPrefix(rest, "{") || !strings.HasSuffix(rest, "}") {
		return fmt.Errorf("no element list")
	}
	body := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(rest, "{"), "}"))
	if body == "" {
		return nil
	}
	for _, item := range strings.Split(body, ",") {
		item = strings.TrimSpace(item)
		keyText, dataText, hasData := strings.Cut(item, " : ")
		e, err := s.parseKey(keyText)
		if err != nil {
			return err
		}
		idx := slices.IndexFunc(s.elems, func(o element) bool { return sameKey(o.key, e.key) })
		if verb == "delete" {
			if hasData {
				return fmt.Errorf("delete element with data %q", item)
			}
			if idx < 0 {
				return fmt.Errorf("no element %q in %s", keyText, s.name)
			}
			s.elems = slices.Delete(s.elems, idx, idx+1)
			continue
		}
		if hasData != (s.data != nil) {
			return fmt.Errorf("element %q does not fit %s", item, s.name)
		}
		if hasData {
			if s.data[0] == kVerdict {
				toks := tokenize(dataText)
				p := &parser{toks: toks}
				v, err := p.verdict()
				if err != nil || !p.done() {
					return fmt.Errorf("verdict %q", dataText)
				}
				e.verd = v
			} else {
				parts := strings.Split(dataText, " . ")
				if len(parts) != len(s.data) {
					return fmt.Errorf("data %q does not fit %s", dataText, s.name)
				}
				for i, part := range parts {
					v, err := parseValue(s.data[i], strings.TrimSpace(part))
					if err != nil {
						return err
					}
					e.data = append(e.data, v)
				}
			}
		}
		if idx >= 0 {
			// nft add of an existing element: same data is fine, other data an error.
			if !slices.Equal(s.elems[idx].data, e.data) || fmt.Sprint(s.elems[idx].verd) != fmt.Sprint(e.verd) {
				return fmt.Errorf("element %q exists in %s with other data", keyText, s.name)
			}
			continue
		}
		s.elems = append(s.elems, e)
	}
	return nil
}

func (s *set) parseKey(text string) (element, error) {
	parts := strings.Split(text, " . ")
	if len(parts) != len(s.key) {
		return element{}, fmt.Errorf("key %q does not fit %s", text, s.name)
	}
	var e element
	for i, part := range parts {
		m, err := parseMatch(s.key[i], strings.TrimSpace(part))
		if err != nil {
			return element{}, err
		}
		if m.isRange() && !s.interval {
			return element{}, fmt.Errorf("%s: %q is a range but the set has no interval flag", s.name, part)
		}
		e.key = append(e.key, m)
	}
	return e, nil
}

func sameKey(a, b []match) bool { return slices.Equal(a, b) }

// check verifies what nft would refuse: references to missing chains and sets, lookups whose
// types do not fit the set's.
func (rs *Ruleset) check() error {
	for _, t := range rs.tables {
		for _, c := range t.chains {
			for _, r := range c.rules {
				for _, st := range r.stmts {
					if err := st.check(t); err != nil {
						return fmt.Errorf("chain %s, rule %q: %w", c.name, r.text, err)
					}
				}
			}
		}
		for _, s := range t.sets {
			for _, e := range s.elems {
				if v := e.verd; v != nil && v.chain != "" {
					if _, ok := t.chains[v.chain]; !ok {
						return fmt.Errorf("map %s: no chain %s", s.name, v.chain)
					}
				}
			}
		}
	}
	return nil
}
