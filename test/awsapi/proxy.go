package awsapi

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Kind is what a fault does to a request.
type Kind int

const (
	// Throttle answers with the service's throttling error (ELBv2 "Throttling", HTTP 400; EC2
	// "RequestLimitExceeded", HTTP 503), as AWS does when a caller exceeds its request rate.
	Throttle Kind = iota + 1
	// ServerError answers HTTP 500 "InternalFailure".
	ServerError
	// AccessDenied answers as AWS does when IAM forbids the call (ELBv2 "AccessDenied", EC2
	// "UnauthorizedOperation", HTTP 403).
	AccessDenied
	// Drop resets the connection without answering; the request never reaches moto.
	Drop
	// DropAfter forwards the request to moto, then resets the connection instead of returning
	// moto's answer: the client cannot tell whether its call took effect.
	DropAfter
	// Delay waits Fault.Delay before forwarding.
	Delay
	// Reject answers HTTP 400 with Fault.Code and Fault.Message: an error AWS documents that
	// the emulator never gives (e.g. OperationNotPermitted for a protected load balancer).
	Reject
)

func (k Kind) String() string {
	return [...]string{"none", "throttle", "500", "access-denied", "drop", "drop-after", "delay", "reject"}[k]
}

// Fault makes matching requests fail.
type Fault struct {
	// Service is the signing name ("ec2", "elasticloadbalancing"); empty matches any.
	Service string
	// Action is the API action ("CreateLoadBalancer"); empty matches any.
	Action string
	Kind   Kind
	// Times is how many matching requests fail; 0 means all of them until Clear.
	Times int
	// Skip lets this many matching requests through before the fault applies: the n-th call
	// of an action fails, as when a process dies between two calls of the same kind.
	Skip  int
	Delay time.Duration
	// Code and Message are what Reject answers.
	Code, Message string
}

// Call is one request the proxy saw.
type Call struct {
	Service, Action string
	// Params are the request's form parameters (query protocol), for asserting on what was
	// asked where the emulator does not check it.
	Params url.Values
	// Fault is the fault applied, 0 if the request went through untouched.
	Fault Kind
}

// Proxy is a reverse proxy in front of moto that injects faults in AWS' wire format.
type Proxy struct {
	URL    string
	target *url.URL
	rp     *httputil.ReverseProxy

	mu     sync.Mutex
	faults []*Fault
	calls  []Call
}

// NewProxy starts a proxy to target (moto's URL) on 127.0.0.1, closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("awsapi: proxy target %q: %v", target, err)
	}
	p := &Proxy{target: u, rp: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Inject adds a fault; faults are tried in the order they were added.
func (p *Proxy) Inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &f)
}

// Clear removes every fault.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// Calls returns the requests seen so far.
func (p *Proxy) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// Count returns how many requests for action (any service) were seen, and how many of those
// were faulted.
func (p *Proxy) Count(action string) (total, faulted int) {
	for _, c := range p.Calls() {
		if c.Action == action {
			total++
			if c.Fault != 0 {
				faulted++
			}
		}
	}
	return total, faulted
}

// credentialScope finds the service in a SigV4 Authorization header:
// "Credential=AKID/20260101/us-east-1/elasticloadbalancing/aws4_request".
var credentialScope = regexp.MustCompile(`Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request`)

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	call := Call{}
	if m := credentialScope.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		call.Service = m[1]
	}
	// EC2 and ELBv2 speak the query protocol: the action is a form field of the POST body.
	if q, err := url.ParseQuery(string(body)); err == nil {
		call.Action, call.Params = q.Get("Action"), q
	}
	f := p.match(call)
	if f != nil {
		call.Fault = f.Kind
	}
	p.mu.Lock()
	p.calls = append(p.calls, call)
	p.mu.Unlock()

	if f == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	switch f.Kind {
	case Throttle:
		if call.Service == "ec2" {
			writeError(w, call.Service, http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
		} else {
			writeError(w, call.Service, http.StatusBadRequest, "Throttling", "Rate exceeded")
		}
	case ServerError:
		writeError(w, call.Service, http.StatusInternalServerError, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure.")
	case AccessDenied:
		if call.Service == "ec2" {
			writeError(w, call.Service, http.StatusForbidden, "UnauthorizedOperation", "You are not authorized to perform this operation.")
		} else {
			writeError(w, call.Service, http.StatusForbidden, "AccessDenied",
				fmt.Sprintf("User: arn:aws:iam::123456789012:user/test is not authorized to perform: elasticloadbalancing:%s", call.Action))
		}
	case Drop:
		reset(w)
	case DropAfter:
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		reset(w)
	case Reject:
		writeError(w, call.Service, http.StatusBadRequest, f.Code, f.Message)
	case Delay:
		select {
		case <-time.After(f.Delay):
			p.rp.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	}
}

func (p *Proxy) match(c Call) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.faults {
		if (f.Service != "" && f.Service != c.Service) || (f.Action != "" && f.Action != c.Action) {
			continue
		}
		if f.Skip > 0 {
			f.Skip--
			continue
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				p.faults = append(p.faults[:i:i], p.faults[i+1:]...)
			}
		}
		return f
	}
	return nil
}

// reset closes the client's connection with a TCP RST, as a failing load balancer or NAT does.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

// writeError answers in the error format of the service's protocol: EC2's own query format or
// the awsQuery format of ELBv2.
func writeError(w http.ResponseWriter, service string, status int, code, message string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	const requestID = "fairlead-fault-injection"
	if service == "ec2" {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`, code, message, requestID)
		return
	}
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
<Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`, typ, code, message, requestID)
}
