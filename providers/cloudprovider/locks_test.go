package cloudprovider

import (
	"context"
	"errors"
	"testing"
	"time"
)

// One call per Service at a time, other Services not held up; a waiter whose context ends
// gives up; nothing is kept once the calls are over.
func TestServiceLocks(t *testing.T) {
	var s serviceLocks
	ctx := context.Background()
	unlockA, err := s.lock(ctx, "ns/a")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := s.lock(ctx, "ns/b")
	if err != nil {
		t.Fatalf("another Service waited: %v", err)
	}
	unlockB()

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.lock(short, "ns/a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second call for ns/a while the first runs: %v, want it to wait until its deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		unlock, err := s.lock(ctx, "ns/a")
		if err == nil {
			unlock()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a second call for ns/a ran while the first held it (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	unlockA()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if n := s.size(); n != 0 {
		t.Fatalf("%d entries left after every call returned", n)
	}
}
