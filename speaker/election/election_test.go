package election

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCheck(t *testing.T) {
	ready := Node{Name: "n1", Ready: true, Labels: map[string]string{"zone": "a"}}
	zoneA := func(n Node) bool { return n.Labels["zone"] == "a" }
	zoneB := func(n Node) bool { return n.Labels["zone"] == "b" }
	local := Service{LocalOnly: true, EndpointNodes: map[string]bool{"n1": true}}
	for _, tc := range []struct {
		name string
		node Node
		svc  Service
		f    Filter
		want Reason
	}{
		{"ready node, cluster policy", ready, Service{}, Filter{}, Eligible},
		{"not ready", Node{Name: "n1"}, Service{}, Filter{}, NotReady},
		{"exclude label, even empty value", Node{Name: "n1", Ready: true, Labels: map[string]string{ExcludeLabel: ""}}, Service{}, Filter{}, Excluded},
		{"selector matches", ready, Service{}, Filter{Selects: zoneA}, Eligible},
		{"selector does not match", ready, Service{}, Filter{Selects: zoneB}, NotSelected},
		{"local with endpoint here", ready, local, Filter{}, Eligible},
		{"local without endpoint here", Node{Name: "n2", Ready: true}, local, Filter{}, NoLocalEndpoint},
		{"cluster policy ignores endpoints", Node{Name: "n2", Ready: true}, Service{EndpointNodes: map[string]bool{}}, Filter{}, Eligible},
		{"speaker dead", ready, Service{}, Filter{Alive: func(string) bool { return false }}, NotAlive},
		{"speaker alive", ready, Service{}, Filter{Alive: func(n string) bool { return n == "n1" }}, Eligible},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Check(tc.node, tc.svc, tc.f); got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEligibleNodesSortedAndFiltered(t *testing.T) {
	nodes := []Node{
		{Name: "c", Ready: true},
		{Name: "a", Ready: true},
		{Name: "b", Ready: false},
		{Name: "d", Ready: true, Labels: map[string]string{ExcludeLabel: "true"}},
		{Name: "e", Ready: true},
	}
	svc := Service{LocalOnly: true, EndpointNodes: map[string]bool{"a": true, "b": true, "c": true, "d": true}}
	got := EligibleNodes(nodes, svc, Filter{})
	if want := []string{"a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("EligibleNodes = %v, want %v", got, want)
	}
}

// Eligibility answers what EligibleNodes answers, for every mix of readiness, exclusion,
// selection, liveness, policy and endpoints (including endpoints on unknown nodes and a map
// entry set to false).
func TestEligibilityMatchesEligibleNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		var nodes []Node
		for i := range r.IntN(12) {
			n := Node{Name: fmt.Sprintf("n%02d", r.IntN(20)+i*20), Ready: r.IntN(4) > 0, Labels: map[string]string{}}
			if r.IntN(5) == 0 {
				n.Labels[ExcludeLabel] = ""
			}
			if r.IntN(2) == 0 {
				n.Labels["zone"] = "a"
			}
			nodes = append(nodes, n)
		}
		f := Filter{}
		if r.IntN(2) == 0 {
			f.Selects = func(n Node) bool { return n.Labels["zone"] == "a" }
		}
		if r.IntN(2) == 0 {
			dead := fmt.Sprintf("n%02d", r.IntN(20))
			f.Alive = func(n string) bool { return n != dead }
		}
		e := NewEligibility(nodes, f)
		for range 5 {
			svc := Service{LocalOnly: r.IntN(2) == 0, EndpointNodes: map[string]bool{}}
			for range r.IntN(6) {
				svc.EndpointNodes[fmt.Sprintf("n%02d", r.IntN(300))] = r.IntN(5) > 0
			}
			for _, n := range nodes {
				if r.IntN(3) == 0 {
					svc.EndpointNodes[n.Name] = r.IntN(5) > 0
				}
			}
			want, got := EligibleNodes(nodes, svc, f), e.For(svc)
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d: For = %v, EligibleNodes = %v (nodes %+v, service %+v)", trial, got, want, nodes, svc)
			}
		}
	}
}

func nodeNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("node%d", i+1))
	}
	return out
}

func ips(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("198.51.%d.%d", 100+i/256, i%256))
	}
	return out
}

func TestOwnerIndependentOfCandidateOrder(t *testing.T) {
	nodes := nodeNames(5)
	rev := slices.Clone(nodes)
	slices.Reverse(rev)
	for _, ip := range ips(200) {
		a, _ := Owner(ip, nodes)
		b, _ := Owner(ip, rev)
		if a != b {
			t.Fatalf("%s: owner %s with one order, %s with another", ip, a, b)
		}
		if r := Rank(ip, rev); r[0] != a || len(r) != len(nodes) {
			t.Fatalf("%s: Rank = %v, owner %s", ip, r, a)
		}
	}
}

func TestOwnerNoCandidates(t *testing.T) {
	if o, ok := Owner("198.51.100.1", nil); ok {
		t.Fatalf("Owner with no candidates = %q, true", o)
	}
}

func TestOwnersSpreadEvenly(t *testing.T) {
	nodes := nodeNames(5)
	count := map[string]int{}
	addrs := ips(5000)
	for _, ip := range addrs {
		o, _ := Owner(ip, nodes)
		count[o]++
	}
	for _, n := range nodes {
		// 1000 expected each; ±15% is more than 4 standard deviations.
		if c := count[n]; c < 850 || c > 1150 {
			t.Errorf("%s owns %d of %d addresses, want about %d: %v", n, c, len(addrs), len(addrs)/len(nodes), count)
		}
	}
}

// When a node leaves, only the addresses it owned move; when it comes back, only addresses
// moving to it move. This is what keeps a failure from flushing every client's neighbour cache.
func TestMinimalMovement(t *testing.T) {
	nodes := nodeNames(5)
	without := slices.DeleteFunc(slices.Clone(nodes), func(s string) bool { return s == "node3" })
	moved := 0
	for _, ip := range ips(2000) {
		before, _ := Owner(ip, nodes)
		after, _ := Owner(ip, without)
		if before != "node3" && after != before {
			t.Fatalf("%s moved from %s to %s though node3 left", ip, before, after)
		}
		if before == "node3" {
			moved++
			if want := Rank(ip, nodes)[1]; after != want {
				t.Fatalf("%s went to %s, want the runner-up %s", ip, after, want)
			}
		}
	}
	if moved == 0 {
		t.Fatal("node3 owned nothing; the test proves nothing")
	}
}
