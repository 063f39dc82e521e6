// Package fence stops a replica from writing to the Kubernetes API once it can no longer prove
// that it holds its leader Lease.
//
// Leader election alone does not prevent two writers: a leader that is paused (SIGSTOP, a long
// GC, a frozen VM) past its Lease resumes believing it still leads, and until its elector notices
// (up to the renew deadline) its reconcilers act on state the new leader has since changed. For
// an allocator that means handing out an address twice.
//
// A Fence sits in the client's transport, so it sees every request of every client built from
// the same rest.Config, the elector's included. From the elector's successful Lease writes it
// learns until when the Lease is provably ours: other candidates wait a full lease duration
// after they last saw the Lease change, and they cannot have seen our write before we sent it,
// so a Lease renewed by a request sent at T is ours until T + leaseDuration. Every other
// mutating request is refused once that time (less a margin) has passed, and carries it as its
// context deadline, so a request that leaves the process is sent while the Lease is ours: one
// paused after the check is abandoned on resume instead of being sent late.
package fence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// ErrNotHeld is the error of a write refused because the Lease is not provably held.
var ErrNotHeld = errors.New("leader Lease not provably held")

// Fence tracks one Lease. The zero value is not usable: use New.
type Fence struct {
	namespace, name string
	margin          time.Duration
	now             func() time.Time

	mu       sync.Mutex
	deadline time.Time // writes allowed strictly before it
	renewed  time.Time // when the last successful Lease write was sent
	refused  func()
}

// Option configures a Fence.
type Option func(*Fence)

// WithMargin keeps this much of every lease duration in reserve, for request latency and for
// clocks that run at slightly different rates. The default is a fifth of the lease duration,
// at least one second.
func WithMargin(d time.Duration) Option { return func(f *Fence) { f.margin = d } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(f *Fence) { f.now = now } }

// OnRefused is called for every write the fence refuses (a metric, say).
func OnRefused(fn func()) Option { return func(f *Fence) { f.refused = fn } }

// New returns a fence for the Lease namespace/name. It holds nothing until the elector, through
// a transport wrapped by Wrap, writes the Lease with itself as holder.
func New(namespace, name string, opts ...Option) *Fence {
	f := &Fence{namespace: namespace, name: name, margin: -1, now: time.Now, refused: func() {}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Deadline is the time until which writes are allowed; zero when the Lease is not held.
func (f *Fence) Deadline() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline
}

// Wrap returns rt with the fence in front of it; it fits rest.Config.WrapTransport.
func (f *Fence) Wrap(rt http.RoundTripper) http.RoundTripper {
	return &transport{f: f, next: rt}
}

type transport struct {
	f    *Fence
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case t.f.isLease(req):
		return t.f.leaseWrite(t.next, req)
	case !mutating(req.Method) || exempt(req.URL.Path):
		return t.next.RoundTrip(req)
	}
	deadline := t.f.Deadline()
	now := t.f.now()
	if !now.Before(deadline) {
		t.f.refused()
		return nil, t.f.notHeld(req, now)
	}
	ctx, cancel := context.WithDeadlineCause(req.Context(), deadline, ErrNotHeld)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func (f *Fence) notHeld(req *http.Request, now time.Time) error {
	f.mu.Lock()
	renewed := f.renewed
	f.mu.Unlock()
	since := "never renewed"
	if !renewed.IsZero() {
		since = fmt.Sprintf("last renewed %s ago", now.Sub(renewed).Round(time.Millisecond))
	}
	return fmt.Errorf("not sending %s %s: %w (Lease %s/%s, %s)", req.Method, req.URL.Path, ErrNotHeld, f.namespace, f.name, since)
}

// leaseWrite passes the elector's write on and, when it succeeds with a holder, extends the
// deadline from the moment the request was sent.
func (f *Fence) leaseWrite(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	lease, err := leaseOf(req)
	sent := f.now()
	resp, rerr := next.RoundTrip(req)
	if rerr != nil || err != nil || resp.StatusCode/100 != 2 {
		return resp, rerr // an unknown outcome proves nothing: the old deadline stands
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" || lease.Spec.LeaseDurationSeconds == nil {
		f.deadline, f.renewed = time.Time{}, time.Time{} // released
		return resp, nil
	}
	d := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	m := f.margin
	if m < 0 {
		m = max(d/5, time.Second)
	}
	f.deadline, f.renewed = sent.Add(d-m), sent
	return resp, nil
}

var leaseGVK = schema.GroupVersionKind{Group: "coordination.k8s.io", Version: "v1", Kind: "Lease"}

// leaseOf decodes the Lease a request writes (JSON or protobuf, as the client chose), leaving
// the request's body readable.
func leaseOf(req *http.Request) (*coordinationv1.Lease, error) {
	var data []byte
	var err error
	switch {
	case req.GetBody != nil:
		var rc io.ReadCloser
		if rc, err = req.GetBody(); err == nil {
			data, err = io.ReadAll(rc)
			rc.Close()
		}
	case req.Body != nil:
		data, err = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(data))
	}
	if err != nil {
		return nil, err
	}
	lease := &coordinationv1.Lease{}
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, &leaseGVK, lease); err != nil {
		return nil, fmt.Errorf("decoding the Lease written: %w", err)
	}
	return lease, nil
}

func (f *Fence) isLease(req *http.Request) bool {
	base := "/apis/coordination.k8s.io/v1/namespaces/" + f.namespace + "/leases"
	p := strings.TrimSuffix(req.URL.Path, "/")
	return (req.Method == http.MethodPut && p == base+"/"+f.name) || (req.Method == http.MethodPost && p == base)
}

func mutating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// exempt: token and access reviews are POSTed but write nothing.
func exempt(path string) bool {
	return strings.HasPrefix(path, "/apis/authentication.k8s.io/") ||
		strings.HasPrefix(path, "/apis/authorization.k8s.io/")
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
