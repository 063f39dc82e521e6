package cloudprovider

import (
	"context"
	"sync"
)

// serviceLocks serialises the calls made for one Service. The upstream service controller
// (k8s.io/cloud-provider's controllers/service) runs EnsureLoadBalancer on its service workers
// and UpdateLoadBalancer on its node worker, for every Service it has cached, with no lock
// between the two: a node that joins while a new Service's EnsureLoadBalancer is under way
// gets the same Service an UpdateLoadBalancer at the same time. A provider's Ensure is
// idempotent one call at a time, not across concurrent calls: both find no Elastic IP tagged
// for the Service and both allocate one.
//
// Entries live only while a call holds or waits for them, so the map holds the Services being
// worked on, not every Service ever seen.
type serviceLocks struct {
	mu sync.Mutex
	m  map[string]*serviceLock
}

type serviceLock struct {
	held chan struct{} // one slot: full while a call runs
	refs int           // calls holding or waiting; guarded by serviceLocks.mu
}

// lock waits until no other call for key runs, or ctx ends. The caller calls unlock once.
func (s *serviceLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*serviceLock{}
	}
	l := s.m[key]
	if l == nil {
		l = &serviceLock{held: make(chan struct{}, 1)}
		s.m[key] = l
	}
	l.refs++
	s.mu.Unlock()

	forget := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if l.refs--; l.refs == 0 {
			delete(s.m, key)
		}
	}
	select {
	case l.held <- struct{}{}:
		return func() {
			<-l.held
			forget()
		}, nil
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// size is how many Services have a call running or waiting.
func (s *serviceLocks) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
