package conntrack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Settings are the connection-tracking sysctls kube-proxy manages; zero leaves one alone.
type Settings struct {
	// Max is the least nf_conntrack_max: a lower value is raised (with the hash table size,
	// a quarter of it), a higher one kept. nf_conntrack_max is host-wide: it can only be
	// written from the host's network namespace.
	Max int
	// TCPEstablished and TCPCloseWait are the timeouts of TCP entries in those states.
	TCPEstablished, TCPCloseWait time.Duration
	// TCPBeLiberal makes conntrack accept TCP packets outside the window instead of marking
	// them invalid (which would drop or un-NAT them).
	TCPBeLiberal bool
	// UDPTimeout and UDPStreamTimeout are the timeouts of UDP entries (one-way, and seen in
	// both directions).
	UDPTimeout, UDPStreamTimeout time.Duration
}

// Apply writes the settings into /proc/sys of the calling process's network namespace,
// writing only what differs.
func Apply(s Settings) error {
	const dir = "/proc/sys/net/netfilter"
	if s.Max > 0 {
		cur, err := readInt(filepath.Join(dir, "nf_conntrack_max"))
		if err != nil {
			return err
		}
		if cur < s.Max {
			if err := write(filepath.Join(dir, "nf_conntrack_max"), s.Max); err != nil {
				return fmt.Errorf("raising nf_conntrack_max from %d to %d: %w (it is host-wide: only the host's "+
					"network namespace can change it; set the conntrack max options to 0 to leave it)", cur, s.Max, err)
			}
			// Like kube-proxy: a hash table a quarter of the entries keeps chains short.
			const hash = "/sys/module/nf_conntrack/parameters/hashsize"
			if h, err := readInt(hash); err == nil && h < s.Max/4 {
				if err := write(hash, s.Max/4); err != nil {
					return fmt.Errorf("raising the conntrack hash size from %d to %d: %w", h, s.Max/4, err)
				}
			}
		}
	}
	for name, d := range map[string]time.Duration{
		"nf_conntrack_tcp_timeout_established": s.TCPEstablished,
		"nf_conntrack_tcp_timeout_close_wait":  s.TCPCloseWait,
		"nf_conntrack_udp_timeout":             s.UDPTimeout,
		"nf_conntrack_udp_timeout_stream":      s.UDPStreamTimeout,
	} {
		if d <= 0 {
			continue
		}
		if err := set(filepath.Join(dir, name), int(d/time.Second)); err != nil {
			return err
		}
	}
	if s.TCPBeLiberal {
		if err := set(filepath.Join(dir, "nf_conntrack_tcp_be_liberal"), 1); err != nil {
			return err
		}
	}
	return nil
}

func set(path string, v int) error {
	cur, err := readInt(path)
	if err != nil || cur == v {
		return err
	}
	if err := write(path, v); err != nil {
		return fmt.Errorf("setting %s from %d to %d: %w", filepath.Base(path), cur, v, err)
	}
	return nil
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%s does not exist: is the nf_conntrack module loaded?", path)
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", path, strings.TrimSpace(string(b)))
	}
	return v, nil
}

func write(path string, v int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(v)), 0o644)
}
