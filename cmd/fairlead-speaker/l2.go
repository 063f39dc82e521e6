package main

import (
	"context"

	"k8s.io/klog/v2"

	"github.com/fairlead-lb/fairlead/speaker/l2/announcer"
)

// setupL2 wires layer 2 (speaker/l2/announcer): the speaker's snapshot and the failure
// detector's live set decide what this node answers ARP/NDP for.
func setupL2(s *speaker) (func(context.Context) error, error) {
	ml, err := s.memberList()
	if err != nil {
		return nil, err
	}
	src, err := s.snapshots()
	if err != nil {
		return nil, err
	}
	w, err := s.announcements()
	if err != nil {
		return nil, err
	}
	a, err := announcer.New(announcer.Options{Node: s.node, Config: s.config, Client: s.client, Informers: s.informer,
		Snapshots: src, Members: ml, Announcements: w, Metrics: s.metrics, Log: klog.Background().WithName("l2")})
	if err != nil {
		return nil, err
	}
	return a.Run, nil
}
