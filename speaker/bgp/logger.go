package bgp

import (
	"fmt"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpLogger routes one GoBGP server's log to logr, and reads the messages that explain why
// a session is not up (GoBGP's API reports states, not reasons) into the session's last error.
// Fields named like a password are dropped, so a future GoBGP log line cannot leak one.
type gobgpLogger struct {
	log    logr.Logger
	s      *session
	notify func()
}

func (l *gobgpLogger) Panic(msg string, f gobgplog.Fields) { l.out(0, msg, f); panic(msg) }
func (l *gobgpLogger) Fatal(msg string, f gobgplog.Fields) { l.out(0, msg, f) }
func (l *gobgpLogger) Error(msg string, f gobgplog.Fields) { l.out(0, msg, f) }
func (l *gobgpLogger) Warn(msg string, f gobgplog.Fields)  { l.out(0, msg, f) }
func (l *gobgpLogger) Info(msg string, f gobgplog.Fields)  { l.out(1, msg, f) }
func (l *gobgpLogger) Debug(msg string, f gobgplog.Fields) { l.out(4, msg, f) }

// GetLevel is Debug so that GoBGP reports failed connection attempts, which it only logs at
// that level; they are passed to logr at V(4).
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }
func (l *gobgpLogger) SetLevel(gobgplog.LogLevel)  {}

func (l *gobgpLogger) out(v int, msg string, f gobgplog.Fields) {
	if reason := l.reason(msg, f); reason != "" {
		if l.s.setState("", reason, false) {
			l.notify()
		}
		l.s.failed(l.log)
	}
	if !l.log.V(v).Enabled() {
		return
	}
	kv := make([]any, 0, 2*len(f))
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range f {
			if !yield(k) {
				return
			}
		}
	}) {
		if strings.Contains(strings.ToLower(k), "password") {
			continue
		}
		kv = append(kv, k, f[k])
	}
	l.log.V(v).Info("gobgp: "+msg, kv...)
}

// reason turns the GoBGP log lines that explain a failure into a status message.
func (l *gobgpLogger) reason(msg string, f gobgplog.Fields) string {
	switch msg {
	case "failed to connect":
		reason := fmt.Sprintf("cannot connect: %v", f["Error"])
		if s := fmt.Sprint(f["Error"]); strings.Contains(s, "timeout") {
			// A TCP MD5 mismatch looks exactly like this: the peer's kernel drops our SYNs.
			reason += " (no answer: is the peer reachable, and do both sides agree on the TCP MD5 password?)"
		}
		return reason
	case "sent notification", "received notification":
		code, okc := f["Code"].(uint8)
		sub, oks := f["Subcode"].(uint8)
		what := fmt.Sprint(f["Data"])
		if me, ok := f["Data"].(*bgp.MessageError); ok {
			what = bgp.NewNotificationErrorCode(me.TypeCode, me.SubTypeCode).String() + ": " + me.Message
		} else if okc && oks {
			what = bgp.NewNotificationErrorCode(code, sub).String()
			if d, ok := f["Communicated-Reason"].(string); ok && d != "" {
				what += ": " + d
			}
		}
		return msg + ": " + what
	case "Peer Down":
		r := fmt.Sprint(f["Reason"])
		if r == "dying" || r == "admin-down" {
			return "" // we ended it: reconfiguration, shutdown or backoff
		}
		return "session went down: " + r
	}
	return ""
}
