// Command plots draws the README's benchmark tables as PNG files (make plots): the service
// proxy's sync time against the number of Services, Fairlead against kube-proxy, and the
// controller's allocation against MetalLB's. The numbers are read from README.md itself, so
// a plot never disagrees with the table it shows.
package main

import (
	"flag"
	"fmt"
	"image/color"
	"log"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func main() {
	readme := flag.String("readme", "README.md", "The README whose benchmark tables are drawn.")
	out := flag.String("out", "test/bench/plots", "Directory the PNG files are written to.")
	flag.Parse()
	b, err := os.ReadFile(*readme)
	if err != nil {
		log.Fatal(err)
	}
	proxy, err := proxyRows(string(b))
	if err != nil {
		log.Fatal(err)
	}
	ctrl, err := controllerRows(string(b))
	if err != nil {
		log.Fatal(err)
	}
	for name, draw := range map[string]func(string) error{
		"proxy-sync.png":            func(p string) error { return drawProxy(proxy, p) },
		"controller-allocation.png": func(p string) error { return drawController(ctrl, p) },
	} {
		path := filepath.Join(*out, name)
		if err := draw(path); err != nil {
			log.Fatalf("%s: %v", path, err)
		}
		fmt.Println("wrote", path)
	}
}

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

// drawProxy: full and partial sync time against Services, both axes logarithmic, one panel
// each, a line per proxy with the value written at every point.
func drawProxy(rows []proxyRow, path string) error {
	panels := []struct {
		title string
		value func(proxyRow) float64
	}{
		{"Full sync (whole ruleset)", func(r proxyRow) float64 { return r.Full }},
		{"Partial sync (one endpoint changed, mean)", func(r proxyRow) float64 { return r.Partial }},
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
			for _, r := range rows {
				if r.Proxy == proxy {
					xys = append(xys, plotter.XY{X: r.Services, Y: pn.value(r)})
					labels = append(labels, durationText(pn.value(r)))
				}
			}
			if len(xys) == 0 {
				return fmt.Errorf("no rows for %s", proxy)
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			line.Color, points.Color = colorOf(proxy), colorOf(proxy)
			line.Width = vg.Points(2)
			points.Shape = draw.CircleGlyph{}
			points.Radius = vg.Points(3)
			lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return err
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
			p.Legend.Add(proxy, line, points)
		}
		plots = append(plots, p)
	}
	return saveTiles(plots, path, 12*vg.Inch, 5*vg.Inch)
}

func durationText(v float64) string {
	switch {
	case v < 1:
		return strconv.FormatFloat(v*1000, 'f', -1, 64) + " ms"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64) + " s"
	}
}

// drawController: time until every Service had its address, and p99 latency, per scenario, a
// bar per controller, each labelled with its value.
func drawController(rows []controllerRow, path string) error {
	type scenario struct {
		services float64
		created  string
	}
	var scenarios []scenario
	for _, r := range rows {
		s := scenario{r.Services, r.Created}
		found := false
		for _, x := range scenarios {
			found = found || x == s
		}
		if !found {
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
				for _, r := range rows {
					if r.Controller == ctl && r.Services == s.services && r.Created == s.created {
						vals[j] = pn.value(r)
					}
				}
				xys = append(xys, plotter.XY{X: float64(j), Y: vals[j]})
				labels = append(labels, durationText(vals[j]))
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return err
			}
			bars.Color = colorOf(ctl)
			bars.LineStyle.Width = 0
			bars.Offset = vg.Length(2*i-1) * w / 2
			lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return err
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
		p.Y.Min, p.Y.Max = 0, math.Ceil(p.Y.Max*1.05/50)*50
		plots = append(plots, p)
	}
	return saveTiles(plots, path, 12*vg.Inch, 5*vg.Inch)
}

// saveTiles draws the plots side by side into one PNG.
func saveTiles(plots []*plot.Plot, path string, w, h vg.Length) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Points(30), PadTop: vg.Points(8),
		PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16)}
	canvases := plot.Align([][]*plot.Plot{plots}, t, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
