// Package nftsync writes renderings of ServicePorts into the proxy's nftables table. It
// remembers what it programmed, so a change to one Service is a transaction touching only
// that Service's chains and elements; a full sync rewrites everything in one transaction,
// which makes a restart atomic and repairs anything someone changed behind our back.
package nftsync

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

// Syncer programs one table. It is not safe for concurrent use.
type Syncer struct {
	nft        knftables.Interface
	table      string // the inet table nft is bound to
	cfg        rules.Config
	programmed map[string]*rules.Service
	// owner maps a map element's ID to the key of the ServicePort that programmed it: two
	// Services claiming one address and port (externalIPs are not checked by the apiserver)
	// must not make every transaction fail.
	owner map[string]string
	// shared counts the ServicePorts wanting each shared element (rules.Element.Shared).
	shared map[string]int
	// rules and elements are Counts' figures, kept up to date so that a partial sync costs
	// nothing per Service it does not touch.
	rules, elements int
	run             Runner
}

// Runner applies an nft script in one transaction. The default runs nft in the calling
// thread's namespace; tests that check the rules without a kernel (nfttrace) keep the script.
type Runner func(ctx context.Context, script string) error

// New returns a Syncer for nft, a knftables.Interface bound to the inet table named table.
func New(nft knftables.Interface, table string, cfg rules.Config) *Syncer {
	return &Syncer{nft: nft, table: table, cfg: cfg, programmed: map[string]*rules.Service{}, owner: map[string]string{}, shared: map[string]int{}, run: runScript}
}

// SetRunner replaces what applies the scripts.
func (s *Syncer) SetRunner(r Runner) { s.run = r }

// Result describes one sync.
type Result struct {
	Operations int
	// Conflicts lists elements that were left out because another ServicePort owns them.
	Conflicts []Conflict
	// Replaced is set, to why, when a full sync could not update the table in place and
	// replaced it (losing affinity entries).
	Replaced error
}

// Conflict is a map element that Key wanted but Owner already holds.
type Conflict struct {
	Key, Element, Owner string
}

func (c Conflict) String() string {
	return fmt.Sprintf("%s is already used by %s", c.Element, c.Owner)
}

// Config returns the configuration the Syncer renders its base objects with.
func (s *Syncer) Config() rules.Config { return s.cfg }

// SetConfig changes the configuration; the next Full sync applies it.
func (s *Syncer) SetConfig(cfg rules.Config) { s.cfg = cfg }

// Counts returns the number of rules and map elements currently programmed for Services.
func (s *Syncer) Counts() (rules, elements int) {
	return s.rules, s.elements + len(s.shared)
}

// count returns what a rendering adds to Counts, shared elements aside.
func count(r *rules.Service) (rules, elements int) {
	if r == nil {
		return 0, 0
	}
	for _, c := range r.Chains {
		rules += len(c.Rules)
	}
	for _, e := range r.Elements {
		if !e.Shared {
			elements++
		}
	}
	return rules, elements
}

// Programmed returns the rendering programmed for key, or nil.
func (s *Syncer) Programmed(key string) *rules.Service { return s.programmed[key] }

// Full replaces the table's content with desired (keyed by ServicePort key) in a single
// transaction: traffic sees either the old rules or the new ones, never none. Affinity sets
// that are still wanted keep their entries.
func (s *Syncer) Full(ctx context.Context, desired map[string]*rules.Service) (Result, error) {
	res, err := s.full(ctx, desired, false)
	if err == nil {
		return res, nil
	}
	// What is in the table cannot be updated in place (say a base chain left by another
	// version with another priority): replace the table instead, still in one transaction.
	// Affinity entries are lost; traffic is not interrupted.
	res, err2 := s.full(ctx, desired, true)
	if err2 != nil {
		return res, fmt.Errorf("%w; replacing the table failed too: %w", err, err2)
	}
	res.Replaced = err
	return res, nil
}

func (s *Syncer) full(ctx context.Context, desired map[string]*rules.Service, replace bool) (Result, error) {
	existingChains, err := s.list(ctx, "chains")
	if err != nil {
		return Result{}, err
	}
	existingSets, err := s.list(ctx, "sets")
	if err != nil {
		return Result{}, err
	}
	existingMaps, err := s.list(ctx, "maps")
	if err != nil {
		return Result{}, err
	}

	var res Result
	owner := map[string]string{}
	accepted := map[string]*rules.Service{}
	for _, key := range slices.Sorted(maps.Keys(desired)) {
		accepted[key] = claim(key, desired[key], plainOwners(owner), &res)
	}

	tx := s.nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("fairlead service proxy")})
	if replace {
		tx.Delete(&knftables.Table{})
		tx.Add(&knftables.Table{Comment: knftables.PtrTo("fairlead service proxy")})
		existingChains, existingSets, existingMaps = nil, nil, nil
	}
	// The endpoint maps are declared with typeof, which nft 1.0.6 cannot read back from the
	// kernel: a rule naming one can only be added in the transaction that creates the map.
	// So the chains naming them are left as they are when they hold their rule (their names
	// say what it is), and otherwise emptied and written again with the maps recreated.
	keep := map[string]bool{}
	if rs, err := s.nft.ListRules(ctx, rules.ProbeChain); err == nil && len(rs) > 0 {
		for _, c := range existingChains {
			keep[c] = rules.NamesTypeofMap(c)
		}
	} else {
		for _, c := range existingChains {
			if rules.NamesTypeofMap(c) {
				tx.Flush(&knftables.Chain{Name: c})
			}
		}
		for _, m := range existingMaps {
			if rules.TypeofMap(m) {
				tx.Delete(&knftables.Map{Name: m})
			}
		}
	}
	baseObjs, baseRules := rules.Base(s.cfg)
	base := map[string]bool{}
	for _, o := range baseObjs {
		tx.Add(o)
		switch o := o.(type) {
		case *knftables.Chain:
			base[o.Name] = true
			if !keep[o.Name] {
				tx.Flush(o)
			}
		case *knftables.Map:
			base[o.Name] = true
			tx.Flush(o)
		case *knftables.Set:
			base[o.Name] = true
			tx.Flush(o)
		}
	}
	for _, r := range baseRules {
		if !keep[r.Chain] {
			tx.Add(r)
		}
	}
	for _, e := range rules.BaseElements(s.cfg) {
		tx.Add(e)
	}

	wantChains, wantSets := map[string]bool{}, map[string]bool{}
	keys := slices.Sorted(maps.Keys(accepted))
	for _, key := range keys {
		for _, c := range accepted[key].Chains {
			wantChains[c.Name] = true
			tx.Add(&knftables.Chain{Name: c.Name})
			tx.Flush(&knftables.Chain{Name: c.Name})
		}
		for _, st := range accepted[key].Sets {
			wantSets[st.Name] = true
			tx.Add(setObject(st))
		}
	}
	// Rules after every chain exists: they jump between chains.
	for _, key := range keys {
		for _, c := range accepted[key].Chains {
			for _, r := range c.Rules {
				tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
			}
		}
	}
	shared := map[string]int{}
	elems := &elementBatch{}
	for _, key := range keys {
		for _, e := range accepted[key].Elements {
			if e.Shared {
				if shared[e.ID()]++; shared[e.ID()] > 1 {
					continue
				}
			}
			elems.add(e)
		}
	}
	var stale []string
	for _, c := range existingChains {
		if !base[c] && !wantChains[c] {
			stale = append(stale, c)
			tx.Flush(&knftables.Chain{Name: c})
		}
	}
	for _, c := range stale {
		tx.Delete(&knftables.Chain{Name: c})
	}
	for _, st := range existingSets {
		if !base[st] && !wantSets[st] {
			tx.Delete(&knftables.Set{Name: st})
		}
	}
	res.Operations = tx.NumOperations() + elems.n
	// The elements follow the objects as one command per map: nft takes an order of
	// magnitude longer to evaluate a command per element, which is all knftables writes.
	script := bytes.NewBufferString(tx.String())
	elems.write(script, s.table)
	if err := s.run(ctx, script.String()); err != nil {
		return res, fmt.Errorf("full sync (%d operations): %w", res.Operations, err)
	}
	s.programmed, s.owner, s.shared = accepted, owner, shared
	s.rules, s.elements = 0, 0
	for _, r := range accepted {
		a, b := count(r)
		s.rules, s.elements = s.rules+a, s.elements+b
	}
	return res, nil
}

func (s *Syncer) list(ctx context.Context, kind string) ([]string, error) {
	l, err := s.nft.List(ctx, kind)
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("listing %s: %w", kind, err)
	}
	return l, nil
}

// claim returns r without the element groups of which another key already owns an element,
// recording the elements it keeps. Shared elements are not owned.
func claim(key string, r *rules.Service, owner ownerView, res *Result) *rules.Service {
	out := &rules.Service{Chains: r.Chains, Sets: r.Sets}
	blocked := map[string]bool{}
	for _, e := range r.Elements {
		if o, ok := owner.get(e.ID()); ok && o != key && !e.Shared && !blocked[e.GroupID()] {
			blocked[e.GroupID()] = true
			if g, ok := owner.get(e.GroupID()); ok {
				o = g
			}
			res.Conflicts = append(res.Conflicts, Conflict{Key: key, Element: e.GroupID(), Owner: o})
		}
	}
	for _, e := range r.Elements {
		if blocked[e.GroupID()] {
			continue
		}
		if !e.Shared {
			owner.set(e.ID(), key)
		}
		out.Elements = append(out.Elements, e)
	}
	return out
}

// Partial applies changes (key → new rendering, nil to remove) in one transaction that
// touches only what differs from what is programmed. On error nothing is applied and the
// caller should fall back to Full.
func (s *Syncer) Partial(ctx context.Context, changes map[string]*rules.Service) (Result, error) {
	var res Result
	keys := slices.Sorted(maps.Keys(changes))

	// Release the elements of the changed keys, then let them claim again. The changes go
	// to an overlay, applied only if nft takes the transaction: copying the whole table
	// would make every partial sync cost as much as the number of Services.
	owner := &overlay{base: s.owner, changed: map[string]*string{}}
	for _, key := range keys {
		if old := s.programmed[key]; old != nil {
			for _, e := range old.Elements {
				owner.del(e.ID())
			}
		}
	}
	accepted := map[string]*rules.Service{}
	for _, key := range keys {
		if changes[key] != nil {
			accepted[key] = claim(key, changes[key], owner, &res)
		}
	}

	// Shared elements: added when the first ServicePort wants them, deleted with the last.
	delta := map[string]int{}
	sharedElem := map[string]rules.Element{}
	for _, key := range keys {
		if old := s.programmed[key]; old != nil {
			for _, e := range old.Elements {
				if e.Shared {
					delta[e.ID()]--
					sharedElem[e.ID()] = e
				}
			}
		}
		if cur := accepted[key]; cur != nil {
			for _, e := range cur.Elements {
				if e.Shared {
					delta[e.ID()]++
					sharedElem[e.ID()] = e
				}
			}
		}
	}
	var addShared, delShared []rules.Element
	for _, id := range slices.Sorted(maps.Keys(sharedElem)) {
		switch before, now := s.shared[id], s.shared[id]+delta[id]; {
		case before == 0 && now > 0:
			addShared = append(addShared, sharedElem[id])
		case before > 0 && now <= 0:
			delShared = append(delShared, sharedElem[id])
		}
	}

	tx := s.nft.NewTransaction()
	var (
		addSets, delSets    []rules.Set
		addChains, newRules []rules.Chain
		flushChains, stale  []string
		addElems, delElems  []rules.Element
	)
	for _, key := range keys {
		old, cur := s.programmed[key], accepted[key]
		if old == nil {
			old = &rules.Service{}
		}
		if cur == nil {
			cur = &rules.Service{}
		}
		oldElems := map[string]rules.Element{}
		for _, e := range old.Elements {
			oldElems[e.ID()] = e
		}
		curElems := map[string]rules.Element{}
		for _, e := range cur.Elements {
			if e.Shared {
				continue
			}
			curElems[e.ID()] = e
			if o, ok := oldElems[e.ID()]; !ok || o.Value != e.Value {
				addElems = append(addElems, e)
			}
		}
		for _, e := range old.Elements {
			if e.Shared {
				continue
			}
			if c, ok := curElems[e.ID()]; !ok || c.Value != e.Value {
				delElems = append(delElems, e)
			}
		}
		oldChains := map[string][]string{}
		for _, c := range old.Chains {
			oldChains[c.Name] = c.Rules
		}
		curChains := map[string]bool{}
		for _, c := range cur.Chains {
			curChains[c.Name] = true
			prev, ok := oldChains[c.Name]
			switch {
			case !ok:
				addChains = append(addChains, c)
				newRules = append(newRules, c)
			case !slices.Equal(prev, c.Rules):
				flushChains = append(flushChains, c.Name)
				newRules = append(newRules, c)
			}
		}
		for _, c := range old.Chains {
			if !curChains[c.Name] {
				stale = append(stale, c.Name)
			}
		}
		oldSets := map[string]bool{}
		for _, st := range old.Sets {
			oldSets[st.Name] = true
		}
		curSets := map[string]bool{}
		for _, st := range cur.Sets {
			curSets[st.Name] = true
			if !oldSets[st.Name] {
				addSets = append(addSets, st)
			}
		}
		for _, st := range old.Sets {
			if !curSets[st.Name] {
				delSets = append(delSets, st)
			}
		}
	}
	// Order matters inside the transaction: nothing may reference a chain or set when it is
	// deleted, and nothing may reference one before it exists. Elements go in batches, as
	// in a full sync: a large partial sync is as cheap per element.
	dels, adds := &elementBatch{verb: "delete"}, &elementBatch{}
	for _, e := range append(delElems, delShared...) {
		dels.add(e)
	}
	for _, st := range addSets {
		tx.Add(setObject(st))
	}
	for _, c := range addChains {
		tx.Add(&knftables.Chain{Name: c.Name})
	}
	for _, c := range append(flushChains, stale...) {
		tx.Flush(&knftables.Chain{Name: c})
	}
	for _, c := range newRules {
		for _, r := range c.Rules {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
	}
	for _, e := range append(addElems, addShared...) {
		adds.add(e)
	}
	after := s.nft.NewTransaction()
	for _, c := range stale {
		after.Delete(&knftables.Chain{Name: c})
	}
	for _, st := range delSets {
		after.Delete(&knftables.Set{Name: st.Name})
	}
	res.Operations = dels.n + tx.NumOperations() + adds.n + after.NumOperations()
	if res.Operations > 0 {
		script := &bytes.Buffer{}
		dels.write(script, s.table)
		script.WriteString(tx.String())
		adds.write(script, s.table)
		script.WriteString(after.String())
		if err := s.run(ctx, script.String()); err != nil {
			return res, fmt.Errorf("partial sync of %s (%d operations): %w", summarize(keys), res.Operations, err)
		}
	}
	for _, key := range keys {
		a, b := count(s.programmed[key])
		c, d := count(accepted[key])
		s.rules, s.elements = s.rules-a+c, s.elements-b+d
		if accepted[key] == nil {
			delete(s.programmed, key)
		} else {
			s.programmed[key] = accepted[key]
		}
	}
	owner.apply()
	for id, d := range delta {
		if n := s.shared[id] + d; n > 0 {
			s.shared[id] = n
		} else {
			delete(s.shared, id)
		}
	}
	return res, nil
}

// ownerView is the element → owner map claim works on.
type ownerView interface {
	get(id string) (string, bool)
	set(id, key string)
}

type plainOwners map[string]string

func (m plainOwners) get(id string) (string, bool) { o, ok := m[id]; return o, ok }
func (m plainOwners) set(id, key string)           { m[id] = key }

// overlay records changes to base (nil: deleted) until apply.
type overlay struct {
	base    map[string]string
	changed map[string]*string
}

func (o *overlay) get(id string) (string, bool) {
	if v, ok := o.changed[id]; ok {
		if v == nil {
			return "", false
		}
		return *v, true
	}
	v, ok := o.base[id]
	return v, ok
}

func (o *overlay) set(id, key string) { o.changed[id] = &key }
func (o *overlay) del(id string)      { o.changed[id] = nil }

func (o *overlay) apply() {
	for id, v := range o.changed {
		if v == nil {
			delete(o.base, id)
		} else {
			o.base[id] = *v
		}
	}
}

// elementBatch collects elements per map, in order, to add (or delete, as verb says).
type elementBatch struct {
	verb  string
	order []string
	byMap map[string][]rules.Element
	n     int
}

func (b *elementBatch) add(e rules.Element) {
	if b.byMap == nil {
		b.byMap = map[string][]rules.Element{}
	}
	if _, ok := b.byMap[e.Map]; !ok {
		b.order = append(b.order, e.Map)
	}
	b.byMap[e.Map] = append(b.byMap[e.Map], e)
	b.n++
}

// write adds the elements to script, a few thousand per command so that an error message
// stays readable.
func (b *elementBatch) write(script *bytes.Buffer, table string) {
	const perCommand = 4096
	for _, m := range b.order {
		es := b.byMap[m]
		for len(es) > 0 {
			chunk := es[:min(perCommand, len(es))]
			es = es[len(chunk):]
			verb := b.verb
			if verb == "" {
				verb = "add"
			}
			fmt.Fprintf(script, "%s element inet %s %s { ", verb, table, m)
			for i, e := range chunk {
				if i > 0 {
					script.WriteString(", ")
				}
				script.WriteString(strings.Join(e.Key, " . "))
				if e.Value != "" && verb == "add" {
					script.WriteString(" : ")
					script.WriteString(e.Value)
				}
			}
			script.WriteString(" }\n")
		}
	}
}

// summarize names the first few keys of a sync, for error messages.
func summarize(keys []string) string {
	if len(keys) <= 5 {
		return strings.Join(keys, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(keys[:5], ", "), len(keys)-5)
}

// runScript runs nft on a script in one transaction, in the calling thread's namespace.
func runScript(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func setObject(st rules.Set) *knftables.Set {
	return &knftables.Set{Name: st.Name, Type: st.Type, Timeout: knftables.PtrTo(st.Timeout),
		Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}}
}

// FullScript returns the script a full sync writes into a node that has no table yet: what
// tests that check the rules without a kernel (nfttrace) trace packets through.
func FullScript(table string, cfg rules.Config, desired map[string]*rules.Service) (string, Result, error) {
	var script string
	s := New(knftables.NewFake(knftables.InetFamily, table), table, cfg)
	s.SetRunner(func(_ context.Context, sc string) error { script = sc; return nil })
	res, err := s.full(context.Background(), desired, false)
	return script, res, err
}
