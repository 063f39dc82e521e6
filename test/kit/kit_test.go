package kit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatal instead of stopping the goroutine.
type recorder struct {
	testing.TB
	ctx   context.Context
	fatal string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Context() context.Context  { return r.ctx }
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...) }

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	r := &recorder{TB: t, ctx: t.Context()}
	calls := 0
	Eventually(r, 5*time.Second, "three calls", func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if r.fatal != "" || calls != 3 {
		t.Errorf("calls %d, fatal %q", calls, r.fatal)
	}
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	r := &recorder{TB: t, ctx: t.Context()}
	start := time.Now()
	var deadline time.Time
	Eventually(r, 300*time.Millisecond, "the impossible", func(ctx context.Context) error {
		deadline, _ = ctx.Deadline()
		return errors.New("still false")
	})
	if took := time.Since(start); took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %s", took)
	}
	if !strings.Contains(r.fatal, "the impossible") || !strings.Contains(r.fatal, "still false") {
		t.Errorf("fatal %q", r.fatal)
	}
	if deadline.IsZero() || deadline.After(start.Add(time.Second)) {
		t.Errorf("cond's context has deadline %v", deadline)
	}
}

func TestEventuallyStopsWithTheTest(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := &recorder{TB: t, ctx: ctx}
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	Eventually(r, time.Minute, "a cancelled wait", func(context.Context) error { return errors.New("no") })
	if time.Since(start) > 5*time.Second || !strings.Contains(r.fatal, "test ended") {
		t.Errorf("after %s: %q", time.Since(start), r.fatal)
	}
}

// Build builds once per source: a second call, from another process too, finds the binary;
// a changed source gets a new one.
func TestBuildOncePerSource(t *testing.T) {
	Heavy(t, "go build")
	t.Setenv("FAIRLEAD_TESTBIN", t.TempDir())
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// A package of our own in the repository, so that its source can change.
	dir, err := os.MkdirTemp(filepath.Join(root, "test", "kit"), "buildtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	src := filepath.Join(dir, "main.go")
	write := func(msg string) {
		if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\""+msg+"\") }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkg := "./test/kit/" + filepath.Base(dir)
	write("one")
	var wg sync.WaitGroup
	paths := make([]string, 3)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate processes' view: no memo in this one.
			buildMu.Lock()
			clear(built)
			buildMu.Unlock()
			p, err := Build(pkg, BuildOptions{})
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	if paths[0] != paths[1] || paths[1] != paths[2] {
		t.Fatalf("one source, several binaries: %v", paths)
	}
	run := func(bin string) string {
		out, err := exec.Command(bin).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(paths[0]); got != "one" {
		t.Fatalf("the binary says %q", got)
	}
	st, _ := os.Stat(paths[0])
	clear(built)
	write("two")
	changed, err := Build(pkg, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if changed == paths[0] || run(changed) != "two" {
		t.Errorf("a changed source gave %s saying %q", changed, run(changed))
	}
	static, err := Build(pkg, BuildOptions{Static: true, Small: true})
	if err != nil || static == changed {
		t.Errorf("other options share a binary: %s, %v", static, err)
	}
	// The first binary is still there, untouched.
	if st2, err := os.Stat(paths[0]); err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("the first build changed: %v", err)
	}
}

// A wait in a Cleanup function (the test's context has ended by then) still waits.
func TestEventuallyInCleanup(t *testing.T) {
	calls := 0
	t.Run("inner", func(t *testing.T) {
		t.Cleanup(func() {
			Eventually(t, 5*time.Second, "a few calls", func(context.Context) error {
				if calls++; calls < 3 {
					return errors.New("not yet")
				}
				return nil
			})
		})
	})
	if calls != 3 {
		t.Errorf("%d calls", calls)
	}
}

func TestConsistentlyHoldsForTheWholeDuration(t *testing.T) {
	r := &recorder{TB: t, ctx: t.Context()}
	start := time.Now()
	calls := 0
	Consistently(r, 500*time.Millisecond, "always true", func(context.Context) error {
		calls++
		return nil
	})
	if took := time.Since(start); r.fatal != "" || took < 500*time.Millisecond || took > 2*time.Second || calls < 3 {
		t.Errorf("after %s and %d calls: fatal %q", took, calls, r.fatal)
	}
}

// A condition that breaks part-way fails the check then, with its error, and is not called again.
func TestConsistentlyFailsWhenTheConditionBreaks(t *testing.T) {
	r := &recorder{TB: t, ctx: t.Context()}
	start := time.Now()
	calls, callsAfter := 0, 0
	Consistently(r, 5*time.Second, "the link", func(context.Context) error {
		if r.fatal != "" {
			callsAfter++
		}
		if calls++; time.Since(start) > 300*time.Millisecond {
			return errors.New("link down")
		}
		return nil
	})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("noticed after %s", took)
	}
	if calls < 3 || callsAfter != 0 {
		t.Errorf("%d calls, %d after the failure", calls, callsAfter)
	}
	if !strings.Contains(r.fatal, "the link") || !strings.Contains(r.fatal, "link down") {
		t.Errorf("fatal %q", r.fatal)
	}
}

func TestConsistentlyStopsWithTheTest(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := &recorder{TB: t, ctx: ctx}
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	Consistently(r, time.Minute, "a cancelled check", func(context.Context) error { return nil })
	if time.Since(start) > 5*time.Second || !strings.Contains(r.fatal, "test ended") {
		t.Errorf("after %s: %q", time.Since(start), r.fatal)
	}
}
