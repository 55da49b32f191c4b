package bench

import (
	"maps"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

type series struct {
	name   string
	pts    []Point
	dashed bool
}

func linePlot(file, title, xl, yl string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xl
	p.Y.Label.Text = yl
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for i, s := range ss {
		if len(s.pts) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.pts))
		for j, pt := range s.pts {
			xys[j].X, xys[j].Y = pt.T, pt.V
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	return p.Save(9*vg.Inch, 4.5*vg.Inch, file)
}

// flat is a horizontal line over the x range of pts.
func flat(pts []Point, v float64) []Point {
	if len(pts) == 0 {
		return nil
	}
	return []Point{{T: 0, V: v}, {T: pts[len(pts)-1].T, V: v}}
}

func writePlots(dir string, r *Report) error {
	if e := r.E2E; e != nil && len(e.Series) > 0 {
		ss := []series{{name: "end-to-end committed events/s", pts: e.Series},
			{name: "target 120,000/s", pts: flat(e.Series, targetE2E), dashed: true}}
		if r.Limits != nil {
			ss = append(ss, series{name: "slowest raw limit: " + r.Limits.Slowest.Name, pts: flat(e.Series, r.Limits.Slowest.PerSec), dashed: true},
				series{name: "naive pipelined", pts: flat(e.Series, r.Limits.NaivePipe.PerSec), dashed: true})
		}
		if err := linePlot(filepath.Join(dir, "e2e.png"), "Scenario 1: backlog drained end to end (Kafka → Redis → ClickHouse → commit)", "seconds", "events/s", ss); err != nil {
			return err
		}
	}
	if f := r.Freshness; f != nil {
		if err := linePlot(filepath.Join(dir, "freshness.png"), "Scenario 2: freshness (generated → balance updated) per second at 50% of max", "seconds", "ms",
			[]series{{name: "p50", pts: f.P50}, {name: "p99", pts: f.P99}, {name: "max", pts: f.MaxF}, {name: "target p99 1 s", pts: flat(f.P99, 1000), dashed: true}}); err != nil {
			return err
		}
	}
	if l := r.Long; l != nil {
		if err := linePlot(filepath.Join(dir, "long.png"), "Scenario 4: memory over the long run", "seconds", "MiB",
			[]series{{name: "bench process RSS (engine + load generator)", pts: l.RSS}, {name: "Go heap in use", pts: l.Heap}, {name: "broker RSS", pts: l.BrokerRSS}}); err != nil {
			return err
		}
		if err := linePlot(filepath.Join(dir, "long-freshness.png"), "Scenario 4: freshness per second over the long run", "seconds", "ms",
			[]series{{name: "p50", pts: l.P50}, {name: "p99", pts: l.P99}, {name: "max", pts: l.MaxF}, {name: "target p99 1 s", pts: flat(l.P99, 1000), dashed: true}}); err != nil {
			return err
		}
		var cs []series
		for _, k := range slices.Sorted(maps.Keys(l.CPU)) {
			cs = append(cs, series{name: k, pts: l.CPU[k]})
		}
		if len(cs) > 0 {
			if err := linePlot(filepath.Join(dir, "long-cpu.png"), "Scenario 4: CPU per process over the long run (1 = a core)", "seconds", "cores", cs); err != nil {
				return err
			}
		}
		if err := linePlot(filepath.Join(dir, "long-throughput.png"), "Scenario 4: committed events/s over the long run", "seconds", "events/s",
			[]series{{name: "committed events/s", pts: l.Throughput}, {name: "produced rate", pts: flat(l.Throughput, l.ProducedRate), dashed: true}}); err != nil {
			return err
		}
	}
	if l := r.Limits; l != nil {
		all := l.All()
		names := []string{}
		vals := plotter.Values{}
		if r.E2E != nil {
			names = append(names, "end-to-end")
			vals = append(vals, r.E2E.EventsPerSec)
		}
		for _, x := range all {
			names = append(names, x.Name)
			vals = append(vals, x.PerSec)
		}
		p := plot.New()
		p.Title.Text = "Scenario 3: end to end beside the raw limits (same run)"
		p.Y.Label.Text = "events/s"
		bars, err := plotter.NewBarChart(vals, vg.Points(40))
		if err != nil {
			return err
		}
		bars.Color = plotutil.Color(0)
		bars.LineStyle.Width = 0
		p.Add(plotter.NewGrid(), bars)
		p.NominalX(names...)
		p.X.Tick.Label.Rotation = 0.35
		p.X.Tick.Label.XAlign = draw.XRight
		if err := p.Save(9*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "limits.png")); err != nil {
			return err
		}
	}
	return nil
}
