// Package scalebench measures Fairlead at cluster scale on one real kube-apiserver: the
// controller draining a backlog of 500, 5,000 and 50,000 Services, the writes it costs the
// apiserver per Service, and the speaker's memory and CPU with that many Services (and a
// hundredth as many Nodes) in its informers. The benchmark itself is BenchmarkScale; this file
// and table.go are its pure parts (the metrics arithmetic and the tables), unit tested.
package scalebench

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text format: a metric name, its labels and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseText reads the samples of a Prometheus text exposition, skipping comments. It
// understands what the apiserver and client_golang write (quoted label values with \\, \" and
// \n escapes, an optional time stamp); a line it cannot read is an error, naming the line.
func ParseText(text string) ([]Sample, error) {
	var out []Sample
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", i+1, line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseLine(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name, line = line[:end], line[end:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, " ,")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.IndexByte(line, '=')
			if eq <= 0 || len(line) < eq+2 || line[eq+1] != '"' {
				return s, fmt.Errorf("bad label")
			}
			name := line[:eq]
			val, rest, err := unquote(line[eq+2:])
			if err != nil {
				return s, fmt.Errorf("label %s: %w", name, err)
			}
			s.Labels[name], line = val, rest
		}
	}
	f := strings.Fields(line)
	if len(f) < 1 || len(f) > 2 {
		return s, fmt.Errorf("want a value and at most a time stamp after the labels")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

// unquote reads a label value up to its closing quote and returns the rest of the line.
func unquote(s string) (string, string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 == len(s) {
				return "", "", fmt.Errorf("unterminated escape")
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated value")
}

// WriteKey is what a write to the apiserver did: its verb and the resource (with the
// subresource after a slash: "services/status").
type WriteKey struct {
	Verb     string
	Resource string
}

func (k WriteKey) String() string { return k.Verb + " " + k.Resource }

// Writes counts write requests by verb and resource.
type Writes map[WriteKey]float64

var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true, "APPLY": true}

// RequestWrites sums the apiserver's apiserver_request_total over every response code (a
// write refused with a conflict still cost the apiserver a request) for the write verbs.
func RequestWrites(samples []Sample) Writes {
	w := Writes{}
	for _, s := range samples {
		if s.Name != "apiserver_request_total" || !writeVerbs[s.Labels["verb"]] {
			continue
		}
		r := s.Labels["resource"]
		if sub := s.Labels["subresource"]; sub != "" {
			r += "/" + sub
		}
		w[WriteKey{s.Labels["verb"], r}] += s.Value
	}
	return w
}

// Sub returns the writes made between before and w (counters only grow while one apiserver
// runs; a key that fell is an error, since it means the counters were reset).
func (w Writes) Sub(before Writes) (Writes, error) {
	d := Writes{}
	for k, v := range w {
		switch {
		case v < before[k]:
			return nil, fmt.Errorf("%s fell from %v to %v: the apiserver restarted", k, before[k], v)
		case v > before[k]:
			d[k] = v - before[k]
		}
	}
	for k, v := range before {
		if _, ok := w[k]; !ok && v > 0 {
			return nil, fmt.Errorf("%s disappeared: the apiserver restarted", k)
		}
	}
	return d, nil
}

// Total is the number of writes.
func (w Writes) Total() float64 {
	var t float64
	for _, v := range w {
		t += v
	}
	return t
}

// Of returns the writes of one verb to one resource.
func (w Writes) Of(verb, resource string) float64 { return w[WriteKey{verb, resource}] }

// Breakdown lists the writes per n (per Service), largest first, as "PATCH services/status
// 1.00"; writes rarer than one per thousand n are left out (the apiserver's own lease
// renewals and the like) but still count in Total.
func (w Writes) Breakdown(n int) string {
	keys := slices.SortedFunc(maps.Keys(w), func(a, b WriteKey) int {
		if w[a] != w[b] {
			if w[a] > w[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a.String(), b.String())
	})
	var parts []string
	for _, k := range keys {
		switch per := w[k] / float64(n); {
		case per >= 0.01:
			parts = append(parts, fmt.Sprintf("%s %.2f", k, per))
		case per >= 0.001:
			parts = append(parts, fmt.Sprintf("%s %.3f", k, per))
		}
	}
	return strings.Join(parts, ", ")
}

// Find returns the value of the first sample named name whose labels include all of kv
// (pairs), and whether there was one.
func Find(samples []Sample, name string, kv ...string) (float64, bool) {
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			match = match && s.Labels[kv[i]] == kv[i+1]
		}
		if match {
			return s.Value, true
		}
	}
	return 0, false
}
