package bgp

import (
	"testing"
	"time"
)

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Only the lowest-named live speaker reaps, only with a majority of the Nodes' speakers alive,
// and only speakers seen alive before, or never seen for a grace period since it started.
func TestReaperDecides(t *testing.T) {
	t0 := time.Now()
	nodes := []string{"a", "b", "c", "d", "e"}
	r := &reaper{c: &Controller{o: Options{Node: "a"}}, started: t0, seen: map[string]bool{}}
	if r.deadFunc(set("a", "b", "c", "d", "e"), nodes, t0) == nil {
		t.Fatal("the lowest-named live speaker does not reap")
	}
	dead := r.deadFunc(set("a", "b", "c"), nodes, t0.Add(time.Second))
	if dead == nil || !dead("d") || !dead("e") || dead("b") {
		t.Fatal("d and e were seen alive and are dead now: they must be reaped, b not")
	}
	if dead("gone") {
		t.Fatal("a node never seen alive is reaped before the grace period")
	}
	if dead := r.deadFunc(set("a", "b", "c"), nodes, t0.Add(neverSeenGrace)); !dead("gone") {
		t.Error("a node never seen alive (a deleted Node's) is not reaped after the grace period")
	}
	if r.deadFunc(set("a", "b"), nodes, t0) != nil {
		t.Error("reaping with 2 of 5 speakers alive: this one may be the one cut off")
	}
	other := &reaper{c: &Controller{o: Options{Node: "b"}}, started: t0, seen: map[string]bool{}}
	if other.deadFunc(set("a", "b", "c"), nodes, t0) != nil {
		t.Error("b reaps although a is alive")
	}
	if other.deadFunc(set("b", "c", "d"), nodes, t0) == nil {
		t.Error("b does not reap with a dead")
	}
}
