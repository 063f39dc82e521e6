package main

import (
	"fmt"
	"strconv"
	"strings"
)

// table returns the rows of the Markdown table whose header line starts with header, each
// as its trimmed cells.
func table(md, header string) ([][]string, error) {
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, header) {
			continue
		}
		var rows [][]string
		for _, r := range lines[i+2:] { // skip the |---| line
			if !strings.HasPrefix(r, "|") {
				break
			}
			cells := strings.Split(strings.Trim(r, "|"), "|")
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			rows = append(rows, cells)
		}
		return rows, nil
	}
	return nil, fmt.Errorf("no table with header %q", header)
}

// seconds parses "41.5 ms", "2.09 s", "288.6 s".
func seconds(s string) (float64, error) {
	v, unit, ok := strings.Cut(s, " ")
	if !ok {
		return 0, fmt.Errorf("duration %q has no unit", s)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	switch unit {
	case "ms":
		return f / 1000, nil
	case "s":
		return f, nil
	}
	return 0, fmt.Errorf("duration %q: unknown unit %q", s, unit)
}

func count(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil {
		return 0, fmt.Errorf("number %q: %w", s, err)
	}
	return f, nil
}

// proxyRow is a row of the service proxy table.
type proxyRow struct {
	Proxy                   string
	Services                float64
	Full, Partial, PartialM float64 // full sync, partial sync mean and max, seconds
}

func proxyRows(md string) ([]proxyRow, error) {
	rows, err := table(md, "| proxy | Services | full sync |")
	if err != nil {
		return nil, err
	}
	var out []proxyRow
	for _, r := range rows {
		if len(r) < 6 {
			return nil, fmt.Errorf("proxy table row %q: %d cells", r, len(r))
		}
		var p proxyRow
		p.Proxy = r[0]
		var errs [4]error
		p.Services, errs[0] = count(r[1])
		p.Full, errs[1] = seconds(r[2])
		p.Partial, errs[2] = seconds(r[4])
		p.PartialM, errs[3] = seconds(r[5])
		for _, e := range errs {
			if e != nil {
				return nil, fmt.Errorf("proxy table row %q: %w", r, e)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// controllerRow is a row of the controller table.
type controllerRow struct {
	Controller, Created string
	Services            float64
	AllAllocated        float64 // seconds
	P50, P99            float64 // seconds
}

func controllerRows(md string) ([]controllerRow, error) {
	rows, err := table(md, "| controller | Services | created |")
	if err != nil {
		return nil, err
	}
	var out []controllerRow
	for _, r := range rows {
		if len(r) < 8 {
			return nil, fmt.Errorf("controller table row %q: %d cells", r, len(r))
		}
		c := controllerRow{Controller: r[0], Created: r[2]}
		var errs [4]error
		c.Services, errs[0] = count(r[1])
		c.AllAllocated, errs[1] = seconds(r[4])
		c.P50, errs[2] = seconds(r[6])
		c.P99, errs[3] = seconds(r[7])
		for _, e := range errs {
			if e != nil {
				return nil, fmt.Errorf("controller table row %q: %w", r, e)
			}
		}
		out = append(out, c)
	}
	return out, nil
}
