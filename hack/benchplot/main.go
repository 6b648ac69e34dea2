// Command benchplot renders the cost curves of docs/benchmarks.md ("Cost
// curves") from the CSV files the benchmarks write, as SVG charts. It is a
// module of its own so that the plotting library stays out of Portcullis's
// dependencies.
//
//	go run . -kind webhook-tokens -in webhook-tokens.csv -out ../../docs/img/webhook-tokens.svg
//
// Each kind of chart (its x column, its panels) is declared in a file of its
// own, chart_<kind>.go, and registered in charts.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// chart is one SVG: a grid of panels sharing the x column.
type chart struct {
	title  string
	x      string // column of the x axis
	xlabel string
	logX   bool
	// group, if set, is a column whose distinct values split every series
	// into one line each (e.g. the store backend).
	group  string
	panels []panel
	// note, if set, is written in an empty tile after the panels.
	note func(t *table) string
}

// panel is one chart of the grid.
type panel struct {
	title, ylabel string
	lines         []series
	percent       bool // y from 0 to 105
}

// series is one line of a panel: column col times scale.
type series struct {
	name, col string
	scale     float64
}

// charts are the kinds -kind names, registered by the chart_*.go files.
var charts = map[string]chart{}

func main() {
	kind := flag.String("kind", "webhook-tokens", "which chart: "+strings.Join(kinds(), ", "))
	in := flag.String("in", "", "CSV written by the benchmark")
	out := flag.String("out", "", "SVG file to write")
	title := flag.String("title", "", "chart title (default: the kind's)")
	flag.Parse()
	c, ok := charts[*kind]
	if !ok {
		fmt.Fprintf(os.Stderr, "benchplot: -kind %q: unknown; one of %s\n", *kind, strings.Join(kinds(), ", "))
		os.Exit(2)
	}
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "benchplot: -in and -out are required")
		os.Exit(2)
	}
	if *title != "" {
		c.title = *title
	}
	if err := render(c, *in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(1)
	}
}

func kinds() []string {
	var k []string
	for name := range charts {
		k = append(k, name)
	}
	sort.Strings(k)
	return k
}

// table is a CSV file by column name: numbers where they parse, and the
// raw text of every cell.
type table struct {
	cols map[string][]float64
	text map[string][]string
	n    int
}

func readTable(path string) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) < 2 {
		return nil, errors.New(path + ": no data rows")
	}
	t := &table{cols: map[string][]float64{}, text: map[string][]string{}, n: len(rows) - 1}
	for _, row := range rows[1:] {
		for i, name := range rows[0] {
			v, err := strconv.ParseFloat(row[i], 64)
			if err != nil {
				v = 0 // a text column (e.g. the group); xy refuses to plot it
			}
			t.cols[name] = append(t.cols[name], v)
			t.text[name] = append(t.text[name], row[i])
		}
	}
	return t, nil
}

// xy is column y (times scale) against column x, for the rows whose group
// column is g (all rows if group is "").
func (t *table) xy(x, y string, scale float64, group, g string) (plotter.XYs, error) {
	xs, ys := t.cols[x], t.cols[y]
	if xs == nil || ys == nil {
		return nil, fmt.Errorf("no column %q or %q", x, y)
	}
	var pts plotter.XYs
	for i := range t.n {
		if group != "" && t.text[group][i] != g {
			continue
		}
		if _, err := strconv.ParseFloat(t.text[y][i], 64); err != nil {
			continue // not measured at this point (e.g. "")
		}
		pts = append(pts, plotter.XY{X: xs[i], Y: ys[i] * scale})
	}
	return pts, nil
}

// groups are the distinct values of the group column, in order of appearance.
func (t *table) groups(group string) []string {
	if group == "" {
		return []string{""}
	}
	var gs []string
	seen := map[string]bool{}
	for _, g := range t.text[group] {
		if !seen[g] {
			seen[g] = true
			gs = append(gs, g)
		}
	}
	return gs
}

func render(c chart, in, out string) error {
	t, err := readTable(in)
	if err != nil {
		return err
	}
	const cols = 2
	tiles := len(c.panels)
	if c.note != nil {
		tiles++
	}
	rows := (tiles + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for r := range plots {
		plots[r] = make([]*plot.Plot, cols)
	}
	groups := t.groups(c.group)
	for i, pn := range c.panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = c.xlabel
		p.Y.Label.Text = pn.ylabel
		if c.logX {
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		var all plotter.XYs
		j := 0
		for _, g := range groups {
			for _, s := range pn.lines {
				pts, err := t.xy(c.x, s.col, s.scale, c.group, g)
				if err != nil {
					return err
				}
				if len(pts) == 0 {
					continue
				}
				all = append(all, pts...)
				l, sc, err := plotter.NewLinePoints(pts)
				if err != nil {
					return err
				}
				l.Color = plotutil.Color(j)
				sc.Color = plotutil.Color(j)
				sc.Shape = plotutil.Shape(j)
				p.Add(l, sc)
				name := strings.TrimSpace(g + " " + s.name)
				if len(pn.lines)*len(groups) > 1 {
					p.Legend.Add(name, l, sc)
				}
				j++
			}
		}
		p.Legend.Top = true
		p.Legend.Left = true
		if pn.percent {
			p.Y.Max = 105
		} else if len(all) > 0 {
			// Room at the top for the legend.
			_, _, _, ymax := plotter.XYRange(all)
			p.Y.Max = max(p.Y.Max, ymax*1.25)
		}
		plots[i/cols][i%cols] = p
	}
	if c.note != nil {
		note := plot.New()
		note.HideAxes()
		note.Title.Text = c.note(t)
		plots[len(c.panels)/cols][len(c.panels)%cols] = note
	}

	w, h := 26*vg.Centimeter, vg.Length(rows)*10*vg.Centimeter
	cv := vgsvg.New(w, h)
	dc := draw.New(cv)
	ts := plot.New().Title.TextStyle
	ts.Font.Size = vg.Points(14)
	ts.XAlign, ts.YAlign = draw.XCenter, draw.YTop
	dc.FillText(ts, vg.Point{X: w / 2, Y: h - 0.2*vg.Centimeter}, c.title)
	body := draw.Crop(dc, 0, 0, 0, -1*vg.Centimeter)
	grid := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter, PadTop: 0.2 * vg.Centimeter, PadBottom: 0.2 * vg.Centimeter, PadLeft: 0.2 * vg.Centimeter, PadRight: 0.4 * vg.Centimeter}
	canvases := plot.Align(plots, grid, body)
	for r := range plots {
		for col := range plots[r] {
			if plots[r][col] != nil {
				plots[r][col].Draw(canvases[r][col])
			}
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := cv.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
