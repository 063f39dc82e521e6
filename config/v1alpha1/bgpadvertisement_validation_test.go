package v1alpha1

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func community(name string, kv ...string) *Community {
	c := &Community{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Spec.Communities = append(c.Spec.Communities, CommunityAlias{Name: kv[i], Value: kv[i+1]})
	}
	return c
}

func TestBGPAdvertisementCompile(t *testing.T) {
	aliases, problems := CompileCommunities([]*Community{
		community("site", "vpn-only", "64512:300", "tagged", "large:64512:7:8"),
		community("a", "clash", "1:1"),
		community("b", "clash", "2:2"),
	})
	if len(problems) != 2 {
		t.Fatalf("problems %+v, want the clash on both objects", problems)
	}
	sel := func(l map[string]string, e ...metav1.LabelSelectorRequirement) []metav1.LabelSelector {
		return []metav1.LabelSelector{{MatchLabels: l, MatchExpressions: e}}
	}
	i32 := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		name string
		spec BGPAdvertisementSpec
		want []string // none: valid; else substrings of the error
	}{
		{"empty selects everything", BGPAdvertisementSpec{}, nil},
		{"full", BGPAdvertisementSpec{IPPools: []string{"public", "dmz.v2"}, Peers: []string{"tor-1"},
			IPPoolSelectors: sel(map[string]string{"tier": "edge"}), AggregationLength: i32(0), AggregationLengthV6: i32(128),
			Communities:      []string{"64512:100", "no-export", "vpn-only", "tagged", "large:1:2:3"},
			LargeCommunities: []string{"4294967295:0:1"},
			NodeSelectors:    sel(nil, metav1.LabelSelectorRequirement{Key: "rack", Operator: metav1.LabelSelectorOpIn, Values: []string{"r1"}})}, nil},
		{"bad node label key", BGPAdvertisementSpec{NodeSelectors: sel(map[string]string{"rack id": "r1"})}, []string{"nodeSelectors[0]", "rack id"}},
		{"bad pool label value", BGPAdvertisementSpec{IPPoolSelectors: sel(map[string]string{"tier": "a b"})}, []string{"ipPoolSelectors[0]"}},
		{"In without values", BGPAdvertisementSpec{NodeSelectors: sel(nil, metav1.LabelSelectorRequirement{Key: "k", Operator: metav1.LabelSelectorOpIn})}, []string{"nodeSelectors[0]"}},
		{"unknown alias", BGPAdvertisementSpec{Communities: []string{"64512:1", "nope"}}, []string{`communities[1]: community "nope": no Community object defines this alias (known: tagged, vpn-only)`}},
		{"conflicting alias", BGPAdvertisementSpec{Communities: []string{"clash"}}, []string{`communities[0]`, `defined differently by Communities "a" and "b"`}},
		{"16-bit overflow", BGPAdvertisementSpec{Communities: []string{"65536:1"}}, []string{`communities[0]`, `"65536:1"`}},
		{"three-part standard", BGPAdvertisementSpec{Communities: []string{"1:2:3"}}, []string{`"1:2:3"`}},
		{"bad large", BGPAdvertisementSpec{Communities: []string{"large:1:2"}}, []string{`communities[0]`, `"1:2"`}},
		{"bad largeCommunities", BGPAdvertisementSpec{LargeCommunities: []string{"1:2:4294967296"}}, []string{`largeCommunities[0]`, "32-bit"}},
		{"aggregation too long", BGPAdvertisementSpec{AggregationLength: i32(33)}, []string{"aggregationLength 33: must be 0 to 32"}},
		{"aggregation negative", BGPAdvertisementSpec{AggregationLength: i32(-1)}, []string{"aggregationLength -1"}},
		{"aggregation v6 too long", BGPAdvertisementSpec{AggregationLengthV6: i32(129)}, []string{"aggregationLengthV6 129: must be 0 to 128"}},
		{"bad pool name", BGPAdvertisementSpec{IPPools: []string{"Public_1"}}, []string{`ipPools: "Public_1" is not a pool name`}},
		{"bad peer name", BGPAdvertisementSpec{Peers: []string{"ToR"}}, []string{`peers: "ToR" is not a BGPPeer name`}},
		{"every error at once", BGPAdvertisementSpec{Peers: []string{"A"}, Communities: []string{"nope"}, AggregationLengthV6: i32(200)},
			[]string{"peers", "communities[0]", "aggregationLengthV6"}},
	} {
		c, err := (&BGPAdvertisement{Spec: tc.spec}).Compile(aliases, nil)
		if len(tc.want) == 0 {
			if err != nil || c == nil {
				t.Errorf("%s: unexpected error %v", tc.name, err)
			}
			continue
		}
		if err == nil || c != nil {
			t.Errorf("%s: compiled to %+v, want an error", tc.name, c)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
}

// Communities resolve to sorted, unique values whatever their spelling: numbers, well-known
// names, aliases (standard and large), "large:" entries and largeCommunities merged.
func TestBGPAdvertisementCompileCommunities(t *testing.T) {
	aliases, _ := CompileCommunities([]*Community{community("site", "vpn-only", "1234:1", "big", "large:64512:7:8", "same", "5:5")})
	c, err := (&BGPAdvertisement{Spec: BGPAdvertisementSpec{
		Communities:      []string{"vpn-only", "big", "same", "no-export", "large:1:2:3", "5:5", "65535:65281", "no-peer"},
		LargeCommunities: []string{"64512:7:8", "1:2:3", "0:0:9"},
	}}).Compile(aliases, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{5<<16 | 5, 1234<<16 | 1, 0xFFFFFF01, 0xFFFFFF04}; !slices.Equal(c.Communities, want) {
		// 65535:65281 is no-export (0xFFFFFF01) by number.
		t.Errorf("communities %x, want %x", c.Communities, want)
	}
	want := []LargeCommunity{{Global: 0, Local1: 0, Local2: 9}, {Global: 1, Local1: 2, Local2: 3}, {Global: 64512, Local1: 7, Local2: 8}}
	if !slices.Equal(c.LargeCommunities, want) {
		t.Errorf("large communities %v, want %v", c.LargeCommunities, want)
	}
}

func TestCompileCommunitiesProblems(t *testing.T) {
	// The apiserver refuses these values and names; objects stored before its rules are
	// refused here, alias by alias.
	in := []*Community{
		community("old", "no-export", "1:1", "bad-value", "70000:1", "fine", "3:3", "word", "no-peer"),
		community("b", "shared", "9:9", "clash", "1:1"),
		community("a", "shared", "9:9"),
		community("c", "clash", "2:2"),
	}
	aliases, problems := CompileCommunities(in)
	var got []string
	for _, p := range problems {
		got = append(got, p.Community+" "+p.Reason+": "+p.Message)
	}
	slices.Sort(got)
	wantProblems := []string{
		`b ConflictingAlias: alias "clash" is defined differently by Communities "b" and "c"`,
		`c ConflictingAlias: alias "clash" is defined differently by Communities "b" and "c"`,
		`old InvalidCommunity: alias "bad-value": community "70000:1": want ASN:VALUE or large:GLOBAL:LOCAL1:LOCAL2`,
		`old InvalidCommunity: alias "no-export" is a well-known community name`,
		`old InvalidCommunity: alias "word": community "no-peer": want ASN:VALUE or large:GLOBAL:LOCAL1:LOCAL2`,
	}
	if !slices.Equal(got, wantProblems) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantProblems, "\n"))
	}
	if known := aliases.known(); known != "fine, shared" {
		t.Errorf("usable aliases %q, want fine, shared (equal definitions agree)", known)
	}
	// The order of the objects does not change the verdict.
	slices.Reverse(in)
	if _, again := CompileCommunities(in); len(again) != len(problems) {
		t.Errorf("reversed input: %d problems, want %d", len(again), len(problems))
	}
	// A well-known name in an advertisement is its value, never an alias.
	c, err := (&BGPAdvertisement{Spec: BGPAdvertisementSpec{Communities: []string{"no-export"}}}).Compile(aliases, nil)
	if err != nil || !slices.Equal(c.Communities, []uint32{0xFFFFFF01}) {
		t.Errorf("no-export: %v %v", c, err)
	}
}

func TestBGPAdvertisementSelects(t *testing.T) {
	c, err := (&BGPAdvertisement{Spec: BGPAdvertisementSpec{
		IPPools:         []string{"public"},
		IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}},
		Peers:           []string{"tor-a"},
		NodeSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r1"}}, {MatchLabels: map[string]string{"rack": "r2"}}},
	}}).Compile(CommunityAliases{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.SelectsPool("public", nil) || !c.SelectsPool("x", map[string]string{"tier": "edge"}) || c.SelectsPool("dmz", map[string]string{"tier": "core"}) {
		t.Error("pool selection: want public by name and tier=edge by label, not dmz")
	}
	if !c.SelectsNode(map[string]string{"rack": "r2"}) || c.SelectsNode(map[string]string{"rack": "r3"}) {
		t.Error("node selection: want any selector to match")
	}
	if !c.SelectsPeer("tor-a") || c.SelectsPeer("tor-b") {
		t.Error("peer selection: want tor-a only")
	}
	all, _ := (&BGPAdvertisement{}).Compile(CommunityAliases{}, nil)
	if !all.SelectsPool("anything", nil) || !all.SelectsNode(nil) || !all.SelectsPeer("any") {
		t.Error("an empty advertisement selects every pool, node and peer")
	}
}

func TestBGPAdvertisementPrefix(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	def, _ := (&BGPAdvertisement{}).Compile(CommunityAliases{}, nil)
	agg, _ := (&BGPAdvertisement{Spec: BGPAdvertisementSpec{AggregationLength: i32(24), AggregationLengthV6: i32(64)}}).Compile(CommunityAliases{}, nil)
	for _, tc := range []struct {
		c    *CompiledBGPAdvertisement
		addr string
		want string
	}{
		{def, "198.51.100.10", "198.51.100.10/32"},
		{def, "2001:db8:ff::10", "2001:db8:ff::10/128"},
		{agg, "198.51.100.10", "198.51.100.0/24"},
		{agg, "2001:db8:ff::10", "2001:db8:ff::/64"},
	} {
		if got := tc.c.Prefix(netip.MustParseAddr(tc.addr)); got.String() != tc.want {
			t.Errorf("prefix of %s: %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// An aggregation length shorter than a prefix of a selected pool is refused, naming the pool,
// the prefix and the length: the route would cover addresses outside the pool. A range counts
// by the widest of the prefixes covering it; every entry of a pool must allow the length;
// pools the advertisement does not select, Elastic IP pools and pools whose addresses do not
// parse (no speaker announces from them) are not checked.
func TestBGPAdvertisementAggregationWithinPools(t *testing.T) {
	pool := func(name string, labels map[string]string, addrs ...string) *IPPool {
		return &IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: IPPoolSpec{Addresses: addrs}}
	}
	eips := pool("eips", nil)
	eips.Spec.AWS = &AWSPool{ElasticIPs: &ElasticIPs{Allocate: ElasticIPsOnDemand}}
	pools := []*IPPool{
		pool("blue", nil, "198.51.100.0/24", "2001:db8:ff::/64"),
		pool("red", map[string]string{"tier": "edge"}, "203.0.113.70-203.0.113.100"),
		pool("multi", nil, "100.64.0.0/16", "100.65.0.0/28"),
		pool("overlapping", nil, "192.0.2.0/28", "192.0.2.8/29"),
		eips,
	}
	i32 := func(v int32) *int32 { return &v }
	edge := []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
	for _, tc := range []struct {
		name string
		spec BGPAdvertisementSpec
		want []string // none: valid; else substrings of the error
	}{
		{"default lengths over every pool", BGPAdvertisementSpec{}, nil},
		{"the pool's own prefix", BGPAdvertisementSpec{IPPools: []string{"blue"}, AggregationLength: i32(24), AggregationLengthV6: i32(64)}, nil},
		{"shorter than a CIDR", BGPAdvertisementSpec{IPPools: []string{"blue"}, AggregationLength: i32(23)},
			[]string{`aggregationLength 23 is shorter than prefix 198.51.100.0/24 of pool "blue": a /23 route would cover addresses outside the pool (use 24 or more`}},
		{"shorter than an IPv6 CIDR", BGPAdvertisementSpec{IPPools: []string{"blue"}, AggregationLengthV6: i32(48)},
			[]string{`aggregationLengthV6 48 is shorter than prefix 2001:db8:ff::/64 of pool "blue"`, "use 64 or more"}},
		{"both families at once", BGPAdvertisementSpec{IPPools: []string{"blue"}, AggregationLength: i32(16), AggregationLengthV6: i32(32)},
			[]string{`aggregationLength 16`, `aggregationLengthV6 32`}},
		{"a range's widest prefix", BGPAdvertisementSpec{IPPoolSelectors: edge, AggregationLength: i32(26)},
			[]string{`aggregationLength 26 is shorter than prefix 203.0.113.80/28, the widest in range 203.0.113.70-203.0.113.100 of pool "red"`, "use 28 or more"}},
		{"a range's widest prefix is enough", BGPAdvertisementSpec{IPPoolSelectors: edge, AggregationLength: i32(28)}, nil},
		{"every entry of a pool", BGPAdvertisementSpec{IPPools: []string{"multi"}, AggregationLength: i32(24)},
			[]string{`prefix 100.65.0.0/28 of pool "multi"`}},
		{"every pool when none is named", BGPAdvertisementSpec{AggregationLength: i32(24)},
			[]string{`pool "multi"`, `pool "red"`}},
		{"unselected pools do not count", BGPAdvertisementSpec{IPPools: []string{"blue", "eips", "overlapping"}, AggregationLength: i32(8)},
			[]string{`pool "blue"`}},
		{"Elastic IPs and unparsable pools are not checked", BGPAdvertisementSpec{IPPools: []string{"eips", "overlapping"}, AggregationLength: i32(8)}, nil},
	} {
		c, err := (&BGPAdvertisement{Spec: tc.spec}).Compile(CommunityAliases{}, pools)
		if len(tc.want) == 0 {
			if err != nil || c == nil {
				t.Errorf("%s: unexpected error %v", tc.name, err)
			}
			continue
		}
		if err == nil || c != nil {
			t.Errorf("%s: compiled to %+v, want an error", tc.name, c)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
		if tc.name == "every pool when none is named" && strings.Contains(err.Error(), `"blue"`) {
			t.Errorf("%s: error %q names blue, whose /24 allows the length", tc.name, err)
		}
	}
}
