package kit

import (
	"context"
	"testing"
	"time"
)

// Interval is how often Eventually asks again, at most.
const Interval = 100 * time.Millisecond

// Eventually calls cond until it returns nil and fails tb with cond's last error (and what
// was awaited) once timeout has passed or, outside Cleanup functions, the test's context
// ended. cond's context ends at the deadline, so a slow call inside cond cannot outlive it
// by much.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	tb.Helper()
	// The test's context ends before its Cleanup functions run; a wait inside one (for what
	// the test leaves to be gone) still has its whole timeout.
	parent := tb.Context()
	inCleanup := parent.Err() != nil
	if inCleanup {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	start := time.Now()
	for {
		began := time.Now()
		err := cond(ctx)
		if err == nil {
			return
		}
		// A check that takes longer than Interval (a command, a request) is not run
		// back to back: the machine is shared with what is being waited for.
		pause := max(Interval, time.Since(began))
		select {
		case <-ctx.Done():
			if !inCleanup && tb.Context().Err() != nil {
				tb.Fatalf("the test ended while waiting for %s: %v", what, err)
				return
			}
			tb.Fatalf("after %s waiting for %s: %v", time.Since(start).Round(time.Millisecond), what, err)
			return
		case <-time.After(pause):
		}
	}
}

// Consistently calls cond for the whole of d and fails tb at the first error, saying how long
// what had held. It stops early, failing, if the test's context ends (outside Cleanup
// functions). cond's context is the test's, not cut at the end of d: a call begun just before
// the end is a check like the others and may finish.
func Consistently(tb testing.TB, d time.Duration, what string, cond func(ctx context.Context) error) {
	tb.Helper()
	ctx := tb.Context()
	inCleanup := ctx.Err() != nil
	if inCleanup {
		ctx = context.Background()
	}
	start := time.Now()
	end := time.NewTimer(d)
	defer end.Stop()
	for {
		began := time.Now()
		if err := cond(ctx); err != nil {
			tb.Fatalf("%s held for %s, then: %v", what, time.Since(start).Round(time.Millisecond), err)
			return
		}
		// Paced as Eventually, for the same reason.
		pause := max(Interval, time.Since(began))
		select {
		case <-end.C:
			return
		case <-ctx.Done():
			tb.Fatalf("the test ended while checking that %s holds", what)
			return
		case <-time.After(pause):
		}
	}
}
