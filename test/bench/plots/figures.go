package main

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/fairlead-lb/fairlead/test/bench/samples"
)

var (
	fairleadColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	otherColor    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
)

func colorOf(name string) color.Color {
	if name == "Fairlead" {
		return fairleadColor
	}
	return otherColor
}

// logTicks labels a log axis with plain numbers (10, 100, 1,000) rather than powers of ten.
type logTicks struct{ format func(float64) string }

func (lt logTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
		v := math.Pow(10, e)
		if v >= min && v <= max {
			ticks = append(ticks, plot.Tick{Value: v, Label: lt.format(v)})
		}
		for m := 2.0; m < 10; m++ {
			if w := m * v; w >= min && w <= max {
				ticks = append(ticks, plot.Tick{Value: w})
			}
		}
	}
	return ticks
}

func servicesLabel(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func durationText(v float64) string {
	if v < 1 {
		return strconv.FormatFloat(sig(v*1000), 'f', -1, 64) + " ms"
	}
	return strconv.FormatFloat(sig(v), 'f', -1, 64) + " s"
}

// figure is panels side by side and, for numbers from sample files, a caption saying when and
// where they were measured: one under the whole figure, or one under each panel.
type figure struct {
	panels   []*plot.Plot
	captions []string
	w, h     vg.Length
}

// save writes the figure as SVG. Fonts are not embedded (a viewer substitutes its own serif):
// embedding would make each file some 100 times larger.
func (f *figure) save(path string) error {
	c := vgsvg.New(f.w, f.h)
	dc := draw.New(c)
	sty := plot.New().Title.TextStyle
	sty.Font.Size = vg.Points(9)
	sty.Color = color.Gray{Y: 0x55}
	sty.XAlign, sty.YAlign = draw.XCenter, draw.YBottom
	height := 0
	for i, c := range f.captions {
		if c == "" {
			continue
		}
		lines := strings.Split(c, "\n")
		height = max(height, len(lines))
		x := f.w * vg.Length(2*i+1) / vg.Length(2*len(f.captions))
		for j, l := range lines {
			dc.FillText(sty, vg.Point{X: x, Y: vg.Points(6 + 12*float64(len(lines)-1-j))}, l)
		}
	}
	if height > 0 {
		dc = draw.Crop(dc, 0, 0, vg.Points(8+12*float64(height)), 0)
	}
	t := draw.Tiles{Rows: 1, Cols: len(f.panels), PadX: vg.Points(30), PadTop: vg.Points(8),
		PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16)}
	canvases := plot.Align([][]*plot.Plot{f.panels}, t, dc)
	for i, p := range f.panels {
		p.Draw(canvases[0][i])
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return err
	}
	// The layout is measured with Liberation Serif, which has Times New Roman's metrics: name
	// it as the fallback, where a viewer lacking Liberation would otherwise take any font.
	svg := strings.ReplaceAll(buf.String(), "font-family:Liberation Serif;", "font-family:'Liberation Serif','Times New Roman',Times,serif;")
	return os.WriteFile(path, []byte(svg), 0o644)
}

// drawProxy: full and partial sync time against Services, both axes logarithmic, one panel
// each, a line per proxy with the value written at every point; the partial syncs' bars
// reach from their mean up to their slowest.
func drawProxy(rows []proxyRow, caption string) (*figure, error) {
	panels := []struct {
		title   string
		value   func(proxyRow) float64
		partial bool
	}{
		{"Full sync (whole ruleset)", func(r proxyRow) float64 { return r.Full }, false},
		{"Partial sync (one endpoint changed): mean, bar to max", func(r proxyRow) float64 { return r.Partial }, true},
	}
	var plots []*plot.Plot
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "Services"
		p.Y.Label.Text = "sync time"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker = logTicks{servicesLabel}
		p.Y.Tick.Marker = logTicks{durationText}
		p.Y.Min, p.Y.Max = 0.005, 1000
		p.X.Min, p.X.Max = 5, 60000
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(12), -vg.Points(6)
		p.Add(plotter.NewGrid())
		for _, proxy := range []string{"Fairlead", "kube-proxy"} {
			var xys plotter.XYs
			var labels []string
			var errs plotter.YErrors
			for _, r := range rows {
				if r.Proxy == proxy {
					xys = append(xys, plotter.XY{X: r.Services, Y: pn.value(r)})
					labels = append(labels, durationText(pn.value(r)))
					errs = append(errs, struct{ Low, High float64 }{0, r.PartialM - r.Partial})
				}
			}
			if len(xys) == 0 {
				return nil, fmt.Errorf("no rows for %s", proxy)
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, err
			}
			line.Color, points.Color = colorOf(proxy), colorOf(proxy)
			line.Width = vg.Points(2)
			points.Shape = draw.CircleGlyph{}
			points.Radius = vg.Points(3)
			lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return nil, err
			}
			for i := range lbl.TextStyle {
				lbl.TextStyle[i].Color = colorOf(proxy)
				lbl.TextStyle[i].Font.Size = vg.Points(9)
			}
			// kube-proxy's values above left of their points, Fairlead's below right: the
			// labels stay off both lines.
			lbl.Offset = vg.Point{X: vg.Points(5), Y: -vg.Points(13)}
			if proxy != "Fairlead" {
				lbl.Offset = vg.Point{X: -vg.Points(6), Y: vg.Points(3)}
				for i := range lbl.TextStyle {
					lbl.TextStyle[i].XAlign = draw.XRight
				}
			}
			p.Add(line, points, lbl)
			if pn.partial {
				bars, err := plotter.NewYErrorBars(struct {
					plotter.XYs
					plotter.YErrors
				}{xys, errs})
				if err != nil {
					return nil, err
				}
				bars.Color = colorOf(proxy)
				bars.Width = vg.Points(1.5)
				p.Add(bars)
			}
			p.Legend.Add(proxy, line, points)
		}
		plots = append(plots, p)
	}
	return &figure{panels: plots, captions: []string{caption}, w: 12 * vg.Inch, h: 5 * vg.Inch}, nil
}

// drawController: time until every Service had its address, and p99 latency, per scenario, a
// bar per controller, each labelled with its value.
func drawController(rows []controllerRow, caption string) (*figure, error) {
	type scenario struct {
		services float64
		created  string
	}
	var scenarios []scenario
	for _, r := range rows {
		s := scenario{r.Services, r.Created}
		if !slices.Contains(scenarios, s) {
			scenarios = append(scenarios, s)
		}
	}
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = fmt.Sprintf("%s Services\n%s", servicesLabel(s.services), s.created)
	}
	panels := []struct {
		title string
		value func(controllerRow) float64
	}{
		{"Time until every Service has an address", func(r controllerRow) float64 { return r.AllAllocated }},
		{"Latency to an address, 99th percentile", func(r controllerRow) float64 { return r.P99 }},
	}
	var plots []*plot.Plot
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.Y.Label.Text = "seconds"
		p.Legend.Top, p.Legend.XOffs = true, -vg.Points(10)
		p.Add(plotter.NewGrid())
		w := vg.Points(40)
		for i, ctl := range []string{"MetalLB", "Fairlead"} {
			vals := make(plotter.Values, len(scenarios))
			var xys plotter.XYs
			var labels []string
			for j, s := range scenarios {
				found := false
				for _, r := range rows {
					if r.Controller == ctl && r.Services == s.services && r.Created == s.created {
						vals[j], found = pn.value(r), true
					}
				}
				if !found {
					return nil, fmt.Errorf("no %s row for %s Services created %s", ctl, servicesLabel(s.services), s.created)
				}
				xys = append(xys, plotter.XY{X: float64(j), Y: vals[j]})
				labels = append(labels, durationText(vals[j]))
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			bars.Color = colorOf(ctl)
			bars.LineStyle.Width = 0
			bars.Offset = vg.Length(2*i-1) * w / 2
			lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return nil, err
			}
			for k := range lbl.TextStyle {
				lbl.TextStyle[k].Font.Size = vg.Points(9)
				lbl.TextStyle[k].XAlign = draw.XCenter
			}
			lbl.Offset = vg.Point{X: bars.Offset, Y: vg.Points(3)}
			p.Add(bars, lbl)
			p.Legend.Add(ctl, bars)
		}
		p.NominalX(names...)
		// Room for the labels, and a round top so that the ticks are round numbers.
		p.Y.Min, p.Y.Max = 0, niceTop(p.Y.Max*1.05)
		p.Y.Tick.Marker = plainTicks{}
		plots = append(plots, p)
	}
	return &figure{panels: plots, captions: []string{caption}, w: 12 * vg.Inch, h: 5 * vg.Inch}, nil
}

// plainTicks are the default ticks labelled without trailing zeros (250, not 250.00).
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}

// niceTop rounds an axis maximum up to 1, 1.5, 2, 3 or 5 times a power of ten.
func niceTop(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 3, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// ecdf is the empirical distribution of values as a step line: at x, the fraction of values
// not above x.
func ecdf(values []float64) plotter.XYs {
	s := slices.Clone(values)
	slices.Sort(s)
	xys := plotter.XYs{{X: s[0], Y: 0}}
	for i, v := range s {
		xys = append(xys, plotter.XY{X: v, Y: float64(i+1) / float64(len(s))})
	}
	return xys
}

// cdfPanel is one CDF panel; lines are added with addCDF. The axis is named in the title:
// gonum/plot reserves room for an x label as if the axis were linear, which on a log axis
// squeezes the data to the left.
func cdfPanel(title string, log bool, lo, hi float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "fraction of trials done"
	// Above 1 a band for the legend, where no curve goes.
	p.Y.Min, p.Y.Max = 0, 1.3
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25, Label: "0.25"},
		{Value: 0.5, Label: "0.5"}, {Value: 0.75, Label: "0.75"}, {Value: 1, Label: "1"}})
	p.X.Min, p.X.Max = lo, hi
	if log {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{durationText}
	} else {
		p.X.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
			ticks := plot.DefaultTicks{}.Ticks(min, max)
			for i := range ticks {
				if ticks[i].Label != "" {
					ticks[i].Label = durationText(ticks[i].Value)
				}
			}
			return ticks
		})
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(4)
	p.Add(plotter.NewGrid())
	return p
}

func addCDF(p *plot.Plot, values []float64, name string, c color.Color, dashed bool) error {
	line, err := plotter.NewLine(ecdf(values))
	if err != nil {
		return err
	}
	line.StepStyle = plotter.PostStep
	line.Color, line.Width = c, vg.Points(2)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	p.Add(line)
	p.Legend.Add(name, line)
	return nil
}

// axisRange spans every value with a margin: a log axis by a factor, a linear one from zero.
func axisRange(log bool, vs ...[]float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = min(lo, slices.Min(v)), max(hi, slices.Max(v))
	}
	if log {
		return lo / 1.5, hi * 1.5
	}
	return 0, niceTop(hi * 1.05)
}

// drawLatencyCDF: for each way the Services came (created while the controller ran, or all
// before it started), the distribution of per-Service latency to an address, Fairlead against
// MetalLB, on a log axis (they differ by two orders of magnitude).
func drawLatencyCDF(f *samples.File) (*figure, error) {
	var plots []*plot.Plot
	type key struct{ services, created string }
	var keys []key
	for _, s := range f.Find("measure", "latency") {
		k := key{s.Labels["services"], s.Labels["created"]}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no latency series", f.Benchmark)
	}
	for _, k := range keys {
		series := f.Find("measure", "latency", "services", k.services, "created", k.created)
		var all [][]float64
		for _, s := range series {
			all = append(all, s.Values)
		}
		lo, hi := axisRange(true, all...)
		title := fmt.Sprintf("%s Services created %s\nlatency from the Create call to the first status with an address", k.services, k.created)
		if k.created == "before start" {
			title = fmt.Sprintf("%s Services created before the controller starts\nlatency from its start to each Service's first status with an address", k.services)
		}
		p := cdfPanel(title, true, lo, hi)
		p.Y.Label.Text = "fraction of Services"
		for _, impl := range []string{"metallb", "fairlead"} {
			for _, s := range series {
				if s.Labels["impl"] != impl {
					continue
				}
				v := s.Sorted()
				name := fmt.Sprintf("%s: p50 %s, p99 %s", controllerName(impl), durationText(quantile(v, 0.5)), durationText(quantile(v, 0.99)))
				if err := addCDF(p, v, name, colorOf(controllerName(impl)), false); err != nil {
					return nil, err
				}
			}
		}
		plots = append(plots, p)
	}
	return &figure{panels: plots, captions: []string{caption(f)}, w: vg.Length(len(plots)) * 6 * vg.Inch, h: 4.5 * vg.Inch}, nil
}

// drawFailover: the distribution of failover times over the trials: layer 2 (speaker
// SIGKILLed → the new owner's gratuitous ARP, and → the client's first connection to it), and
// BGP (node link cut → route gone from the router's FIB, with BFD and with only the hold
// timer), each from its own file when present.
func drawFailover(l2, bgp *samples.File) (*figure, error) {
	var plots []*plot.Plot
	var captions []string
	if l2 != nil {
		garp, conn := l2.Find("event", "garp"), l2.Find("event", "connect")
		if len(garp) != 1 || len(conn) != 1 {
			return nil, fmt.Errorf("%s: want one garp and one connect series, have %d and %d", l2.Benchmark, len(garp), len(conn))
		}
		lo, hi := axisRange(false, garp[0].Values, conn[0].Values)
		p := cdfPanel(fmt.Sprintf("Layer 2: the owner's speaker SIGKILLed (%d trials)\ntime from SIGKILL to", len(garp[0].Values)), false, lo, hi)
		if err := addCDF(p, garp[0].Values, "new owner's gratuitous ARP: "+summary(garp[0]), fairleadColor, false); err != nil {
			return nil, err
		}
		if err := addCDF(p, conn[0].Values, "client's first connection to it: "+summary(conn[0]), color.Gray{Y: 0x44}, true); err != nil {
			return nil, err
		}
		plots = append(plots, p)
		captions = append(captions, caption(l2))
	}
	if bgp != nil {
		bfd, hold := bgp.Find("detection", "BFD 300ms x3"), bgp.Find("detection", "hold timer 9s")
		if len(bfd) != 1 || len(hold) != 1 {
			return nil, fmt.Errorf("%s: want one BFD and one hold timer series, have %d and %d", bgp.Benchmark, len(bfd), len(hold))
		}
		lo, hi := axisRange(true, bfd[0].Values, hold[0].Values)
		p := cdfPanel(fmt.Sprintf("BGP: the node's link cut at the router (%d trials each)\ntime until the route is gone from the router's FIB", len(bfd[0].Values)), true, lo, hi)
		if err := addCDF(p, bfd[0].Values, "BFD 300 ms × 3: "+summary(bfd[0]), fairleadColor, false); err != nil {
			return nil, err
		}
		if err := addCDF(p, hold[0].Values, "hold timer 9 s only: "+summary(hold[0]), otherColor, false); err != nil {
			return nil, err
		}
		plots = append(plots, p)
		captions = append(captions, caption(bgp))
	}
	return &figure{panels: plots, captions: captions, w: vg.Length(len(plots)) * 6 * vg.Inch, h: 4.5 * vg.Inch}, nil
}

// summary is the median and maximum as the failover benchmarks print them (their p50 is the
// element at ⌊n/2⌋; over 20 trials their p99 is the maximum).
func summary(s samples.Series) string {
	v := s.Sorted()
	return fmt.Sprintf("p50 %s, max %s", durationText(v[len(v)/2]), durationText(v[len(v)-1]))
}
