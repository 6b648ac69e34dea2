// Command benchplot renders the cost curves of docs/benchmarks.md ("Cost
// curves") from the CSV files the benchmarks write, as SVG charts. It is a
// module of its own so that the plotting library stays out of Portcullis's
// dependencies.
//
//	go run . -in webhook-tokens.csv -out ../../docs/img/webhook-tokens.svg
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

func main() {
	in := flag.String("in", "", "CSV written by go run ./hack/bench/tokenreview -scale … -csv")
	out := flag.String("out", "", "SVG file to write")
	title := flag.String("title", "TokenReview webhook: cost as distinct live tokens grow", "chart title")
	flag.Parse()
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "benchplot: -in and -out are required")
		os.Exit(2)
	}
	if err := render(*in, *out, *title); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(1)
	}
}

// table is a CSV file by column name.
type table struct {
	cols map[string][]float64
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
	t := &table{cols: map[string][]float64{}, n: len(rows) - 1}
	for _, row := range rows[1:] {
		for i, name := range rows[0] {
			v, err := strconv.ParseFloat(row[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: column %s: %w", path, name, err)
			}
			t.cols[name] = append(t.cols[name], v)
		}
	}
	return t, nil
}

func (t *table) xy(x, y string, scale float64) (plotter.XYs, error) {
	xs, ys := t.cols[x], t.cols[y]
	if xs == nil || ys == nil {
		return nil, fmt.Errorf("no column %q or %q", x, y)
	}
	pts := make(plotter.XYs, t.n)
	for i := range pts {
		pts[i].X, pts[i].Y = xs[i], ys[i]*scale
	}
	return pts, nil
}

// series is one line of a panel.
type series struct {
	name, col string
	scale     float64
}

// panel is one chart of the grid, against the number of tokens.
type panel struct {
	title, ylabel string
	lines         []series
}

var panels = []panel{
	{"Throughput", "reviews/s", []series{{"reviews/s", "reviews_per_s", 1}}},
	{"Latency", "ms", []series{{"p50", "p50_ms", 1}, {"p99", "p99_ms", 1}}},
	{"Server CPU per review", "µs", []series{{"CPU/review", "server_cpu_us_per_review", 1}}},
	{"Verification cache hits", "%", []series{{"hit ratio", "cache_hit_ratio", 100}}},
	{"Server resident memory", "MiB", []series{{"RSS after the run", "rss_mib", 1}, {"peak RSS", "peak_rss_mib", 1}}},
}

func render(in, out, title string) error {
	t, err := readTable(in)
	if err != nil {
		return err
	}
	const rows, cols = 3, 2
	plots := make([][]*plot.Plot, rows)
	for r := range plots {
		plots[r] = make([]*plot.Plot, cols)
	}
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "distinct live tokens (log)"
		p.Y.Label.Text = pn.ylabel
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		for j, s := range pn.lines {
			pts, err := t.xy("tokens", s.col, s.scale)
			if err != nil {
				return err
			}
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			l.Color = plotutil.Color(j)
			sc.Color = plotutil.Color(j)
			sc.Shape = plotutil.Shape(j)
			p.Add(l, sc)
			if len(pn.lines) > 1 {
				p.Legend.Add(s.name, l, sc)
			}
		}
		p.Legend.Top = true
		p.Legend.Left = true
		if pn.ylabel == "%" {
			p.Y.Max = 105
		} else {
			// Room at the top for the legend.
			_, _, _, ymax := plotter.XYRange(mustXY(t, pn))
			p.Y.Max = max(p.Y.Max, ymax*1.25)
		}
		plots[i/cols][i%cols] = p
	}
	// The empty sixth tile holds the cache size, for reading the x axis.
	note := plot.New()
	note.HideAxes()
	if cs := t.cols["cache_size"]; len(cs) > 0 {
		note.Title.Text = fmt.Sprintf("verification cache: %.0f tokens (tokens.cacheSize)", cs[0])
	}
	plots[2][1] = note

	const w, h = 26 * vg.Centimeter, 30 * vg.Centimeter
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	ts := plot.New().Title.TextStyle
	ts.Font.Size = vg.Points(14)
	ts.XAlign, ts.YAlign = draw.XCenter, draw.YTop
	dc.FillText(ts, vg.Point{X: w / 2, Y: h - 0.2*vg.Centimeter}, title)
	body := draw.Crop(dc, 0, 0, 0, -1*vg.Centimeter)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter, PadTop: 0.2 * vg.Centimeter, PadBottom: 0.2 * vg.Centimeter, PadLeft: 0.2 * vg.Centimeter, PadRight: 0.4 * vg.Centimeter}
	canvases := plot.Align(plots, tiles, body)
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
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mustXY is every point of a panel (its columns were checked when added).
func mustXY(t *table, pn panel) plotter.XYs {
	var all plotter.XYs
	for _, s := range pn.lines {
		pts, _ := t.xy("tokens", s.col, s.scale)
		all = append(all, pts...)
	}
	return all
}
