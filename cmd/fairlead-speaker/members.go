package main

import (
	"flag"

	"k8s.io/klog/v2"

	"github.com/fairlead-lb/fairlead/speaker/members"
)

var (
	memberlistBind = flag.String("memberlist-bind-address", "",
		"Address the speakers' failure detector listens on (default: this Node's InternalIP).")
	memberlistPort = flag.Int("memberlist-port", 7946, "Port (UDP and TCP) of the speakers' failure detector.")
	memberlistKey  = flag.String("memberlist-secret-file", "",
		"File holding a 16, 24 or 32 byte key that encrypts the failure detector's traffic (default: none).")
)

// memberList returns the speaker's shared failure detector, checking its flags on first use
// (in setup, so a bad flag fails fast).
func (s *speaker) memberList() (*members.Shared, error) {
	if s.members != nil {
		return s.members, nil
	}
	ml, err := members.New(members.Options{Node: s.node, Nodes: s.informer.Core().V1().Nodes(),
		BindAddress: *memberlistBind, Port: *memberlistPort, SecretFile: *memberlistKey,
		Metrics: s.metrics, Log: klog.Background().WithName("members")})
	if err != nil {
		return nil, err
	}
	s.members = ml
	return ml, nil
}
