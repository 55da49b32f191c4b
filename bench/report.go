package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
)

// Issue 16's targets.
const (
	targetE2E          = 120_000 // events/s end to end
	targetFreshMs      = 1000    // freshness p99, ms, at 50% load and over the long run
	targetCheckP99Ms   = 2       // POST check p99, open loop, while the engine drains
	targetRedisUs      = 4       // CPU µs per event
	targetEngineUs     = 3
	targetClickHouseUs = 4
)

func targets(r *Report) []Target {
	var ts []Target
	if r.E2E != nil {
		ts = append(ts, Target{Name: "end-to-end throughput", Want: ">= 120,000 events/s",
			Got: fmt.Sprintf("%.0f events/s", r.E2E.EventsPerSec), Met: r.E2E.EventsPerSec >= targetE2E})
		ts = append(ts, Target{Name: "exactly-once", Want: "Redis balances, rated_usage FINAL, ledger = what was sent", Got: exactGot(r.E2E), Met: r.E2E.Exact})
		if e := r.E2EWait; e != nil {
			ts = append(ts, Target{Name: fmt.Sprintf("exactly-once, WAIT %d", e.WaitReplicas), Want: "the same", Got: exactGot(e), Met: e.Exact})
		}
		if r.Limits != nil {
			s := r.Limits.Slowest
			ratio := r.E2E.EventsPerSec / s.PerSec
			ts = append(ts, Target{Name: "vs slowest true raw limit", Want: ">= 50% of " + s.Name,
				Got: fmt.Sprintf("%.0f%% of %.0f/s", 100*ratio, s.PerSec), Met: ratio >= 0.5})
			for _, n := range []Limit{r.Limits.NaivePipe, r.Limits.NaiveSeq} {
				x := r.E2E.EventsPerSec / n.PerSec
				ts = append(ts, Target{Name: "vs " + n.Name, Want: ">= 3x", Got: fmt.Sprintf("%.1fx of %.0f/s", x, n.PerSec), Met: x >= 3})
			}
		}
		ts = append(ts, cpuTargets(r.E2E)...)
	}
	if r.Freshness != nil {
		f := r.Freshness.Freshness
		ts = append(ts, Target{Name: "freshness p99 at 50% load", Want: "<= 1000 ms",
			Got: fmt.Sprintf("%.1f ms at %.0f/s", f.P99, r.Freshness.ProducedRate), Met: f.Count > 0 && f.P99 <= targetFreshMs})
	}
	if l := r.Long; l != nil {
		got := fmt.Sprintf("p99 %.1f ms, max %.1f ms over %d events at %.0f/s; load %s → %s", l.Freshness.P99, l.Freshness.Max, l.Events, l.ProducedRate, l.LoadBefore, l.LoadAfter)
		if !l.Drained {
			got += "; NOT drained 2 minutes after the last send"
		}
		ts = append(ts, Target{Name: "sustained: long run freshness p99", Want: "<= 1000 ms over the whole run",
			Got: got, Met: l.Drained && l.Freshness.Count > 0 && l.Freshness.P99 <= targetFreshMs})
	}
	if r.Memory != nil && r.Memory.IDs > 0 {
		ts = append(ts, Target{Name: "Redis bytes per remembered id", Want: "<= 16", Got: fmt.Sprintf("%.2f", r.Memory.BytesPerID), Met: r.Memory.BytesPerID <= 16})
	}
	if a := r.API; a != nil && a.OpenRate > 0 {
		if a.Load != nil {
			ts = append(ts, Target{Name: "check API p99, open loop, engine at 50% load", Want: "<= 2 ms",
				Got: fmt.Sprintf("%.2f ms at %.0f req/s while %.0f events/s drain (idle: %.2f ms)", a.LoadCheck.P99, a.OpenRate, a.Load.ProducedRate, a.OpenCheck.P99),
				Met: a.LoadCheck.Count > 0 && a.LoadCheck.P99 <= targetCheckP99Ms})
		} else {
			ts = append(ts, Target{Name: "check API p99, open loop, engine at 50% load", Want: "<= 2 ms",
				Got: fmt.Sprintf("not measured under load (no e2e rate); idle %.2f ms at %.0f req/s", a.OpenCheck.P99, a.OpenRate)})
		}
	}
	return ts
}

// cpuTargets: CPU per event of the drain, per process (/proc; Redis from
// INFO cpu of its masters). The broker has no target.
func cpuTargets(e *E2EResult) []Target {
	var ts []Target
	row := func(name string, us, want float64, ok bool) {
		t := Target{Name: "CPU per event, " + name, Want: fmt.Sprintf("<= %.0f µs", want)}
		if want == 0 {
			t.Want, t.Met = "(reported)", true
		}
		if !ok {
			t.Got, t.Met = "not measured", false
		} else {
			t.Got = fmt.Sprintf("%.2f µs", us)
			if want > 0 {
				t.Met = us <= want
			}
		}
		ts = append(ts, t)
	}
	redisOK := false
	for _, n := range e.RedisCPU {
		redisOK = redisOK || (n.Role == "master" && !n.Restarted)
	}
	row("Redis", e.RedisUsPerEvent, targetRedisUs, redisOK)
	sum := map[string]float64{}
	seen := map[string]bool{}
	for _, p := range e.ProcCPU {
		k := "broker"
		switch {
		case strings.HasPrefix(p.Name, "engine"):
			k = "engine"
		case p.Name == "clickhouse":
			k = "clickhouse"
		}
		sum[k] += p.UsPerEvent
		seen[k] = true
	}
	row("engine", sum["engine"], targetEngineUs, seen["engine"])
	row("ClickHouse", sum["clickhouse"], targetClickHouseUs, seen["clickhouse"])
	if seen["broker"] {
		row("broker", sum["broker"], 0, true)
	}
	return ts
}

// cpuRows prints Redis CPU per event: per node, then the deployment's.
func cpuRows(row func(s, f, v string), e *E2EResult) {
	for _, n := range e.RedisCPU {
		name := "Redis " + n.Role + " " + n.Addr
		if n.Role != "master" {
			name += " (of " + n.Master + ")"
		}
		if n.Restarted {
			row("", name, "restarted during the drain: CPU not measured")
			continue
		}
		row("", name, fmt.Sprintf("%.2f µs CPU per event on the shard (%d events), %.2f µs per event of the drain, %.0f%% of a core",
			n.UsPerEvent, n.Events, n.UsPerEventAll, 100*n.Util))
	}
	if len(e.RedisCPU) > 0 {
		row("", "Redis CPU per event", fmt.Sprintf("masters %.2f µs, replicas %.2f µs (INFO cpu; a shared server's other clients count too)", e.RedisUsPerEvent, e.RedisReplicaUsPerEvent))
	}
	for _, p := range e.ProcCPU {
		row("", p.Name+" CPU per event", fmt.Sprintf("%.2f µs (%.2f s, %.0f%% of a core; /proc utime+stime over the drain)", p.UsPerEvent, p.CPUSeconds, 100*p.Util))
	}
}

// cpuPerEventText: a steady run's CPU per produced event, per process.
func cpuPerEventText(l *SteadyResult) string {
	names := make([]string, 0, len(l.CPUPerEvent))
	for k := range l.CPUPerEvent {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f µs", k, l.CPUPerEvent[k]))
	}
	return strings.Join(parts, ", ")
}

func exactGot(e *E2EResult) string {
	x := e.Check
	if x == nil {
		return "not checked"
	}
	s := fmt.Sprintf("archived %d rows of %d ids, %d unique sent; Redis drew %s of %s credits; ledger %d of %d events",
		x.ArchivedRows, x.ArchivedIDs, e.Unique, x.RedisMicro, x.WantAllMicro, x.LedgerEvents, x.WantAllEvents)
	if x.WantAllEvents != x.WantEvents {
		s += " (Redis and ledger: every drain so far)"
	}
	if x.Mismatched > 0 {
		s += fmt.Sprintf("; %d subscriptions differ, first %s", x.Mismatched, x.First)
	}
	if x.DeadLetters > 0 {
		s += fmt.Sprintf("; %d dead letters", x.DeadLetters)
	}
	return s
}

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// printReport writes the results table.
func printReport(out io.Writer, r *Report) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\ncreditmeter bench — %s, %d CPUs, %s; load %s → %s; %.0fs\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Host.CPUs, r.Host.GoVersion, r.LoadBefore, r.LoadAfter, r.Took)
	if r.Command != "" {
		fmt.Fprintf(tw, "command: %s\n", r.Command)
	}
	fmt.Fprintln(tw, "\nscenario\tfigure\tvalue\t")
	row := func(s, f, v string) { fmt.Fprintf(tw, "%s\t%s\t%s\t\n", s, f, v) }
	if e := r.E2E; e != nil {
		row("1 end-to-end", "Kafka→Redis→ClickHouse→commit", fmt.Sprintf("%.0f events/s (%d events, %.1fs; steady 10–90%%: %.0f/s)", e.EventsPerSec, e.Events, e.Seconds, e.SteadyPerSec))
		row("", "exactly-once (from the stores)", fmt.Sprintf("%v: %s", e.Exact, exactGot(e)))
		row("", "Apply statuses (information)", fmt.Sprintf("applied %d, replayed %d, %d of %d duplicate ids caught", e.Applied, e.DupOffset, e.DupID, e.Duplicates))
		row("", "producer (kafka-go, 4 writers)", fmt.Sprintf("%.0f events/s, %.2f µs of the bench process's CPU per event (generator + producer)", e.ProducePerSec, e.GenUsPerEvent))
		cpuRows(row, e)
	}
	if e := r.E2EWait; e != nil {
		v := fmt.Sprintf("%.0f events/s (%d events, %.1fs; steady %.0f/s)", e.EventsPerSec, e.Events, e.Seconds, e.SteadyPerSec)
		if r.E2E != nil && r.E2E.EventsPerSec > 0 {
			v += fmt.Sprintf(" = %.0f%% of the drain without WAIT", 100*e.EventsPerSec/r.E2E.EventsPerSec)
		}
		row(fmt.Sprintf("1 e2e, WAIT %d", e.WaitReplicas), "same, WAIT before each commit", v)
		if e.Waits > 0 {
			row("", "time in WAIT", fmt.Sprintf("%.3f s in %d waits (%.1f ms each, %d batches), %.1f%% of the drain",
				e.Stages.Wait, e.Waits, 1000*e.Stages.Wait/float64(e.Waits), e.Batches, 100*e.Stages.Wait/e.Seconds))
		}
		row("", "exactly-once (from the stores)", fmt.Sprintf("%v: %s", e.Exact, exactGot(e)))
		cpuRows(row, e)
	}
	if f := r.Freshness; f != nil {
		row("2 freshness", fmt.Sprintf("at %.0f events/s", f.ProducedRate), fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms (%d events, warm-up %.0fs excluded)",
			f.Freshness.P50, f.Freshness.P99, f.Freshness.P999, f.Freshness.Max, f.Freshness.Count, f.WarmupS))
	}
	if l := r.Limits; l != nil {
		for _, x := range l.All() {
			v := fmt.Sprintf("%.0f /s", x.PerSec)
			if r.E2E != nil {
				v += fmt.Sprintf("  (end-to-end = %.0f%%)", 100*r.E2E.EventsPerSec/x.PerSec)
			}
			row("3 raw limit", x.Name, v)
		}
	}
	if m := r.Memory; m != nil {
		row("4 memory", "Redis per remembered id", fmt.Sprintf("%.2f B (%d ids in %d dedupe sets, %d B)", m.BytesPerID, m.IDs, m.DedupeKeys, m.DedupeBytes))
		row("", "Redis per subscription", fmt.Sprintf("%.0f B with ledger, %.0f B without (%d subscriptions, %d keys)", m.BytesPerSub, m.BytesPerSubBase, m.Subscriptions, m.SubKeys))
		row("", "used_memory per event", fmt.Sprintf("%.1f B (INFO delta over scenario 1, shared Redis)", m.UsedPerEvent))
	}
	if l := r.Long; l != nil {
		row("4 long run", fmt.Sprintf("%d events at %.0f/s", l.Events, l.ProducedRate), fmt.Sprintf("freshness p50 %.1f ms, p99 %.1f ms, max %.1f ms over the whole run (warm-up %.0fs excluded); drained %v, %.1fs after the last send",
			l.Freshness.P50, l.Freshness.P99, l.Freshness.Max, l.WarmupS, l.Drained, l.DrainSeconds))
		row("", "memory, load", fmt.Sprintf("RSS %.0f → %.0f MiB (max %.0f); load average %s → %s", l.RSSStart, l.RSSEnd, l.RSSMax, l.LoadBefore, l.LoadAfter))
		row("", "CPU per event over the run", cpuPerEventText(l))
		row("", "engine batches", fmt.Sprintf("%d batches, %.0f events each, %.1f events per Lua call", l.BatchCount, float64(l.Events)/float64(max(l.BatchCount, 1)), l.EventsPerCall))
	}
	if a := r.API; a != nil {
		row("5 API", fmt.Sprintf("GET balance, %d clients", a.Workers), fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.1f ms, %.0f req/s", a.Balance.P50, a.Balance.P99, a.Balance.Max, a.BalanceRPS))
		row("", fmt.Sprintf("POST check, %d clients", a.Workers), fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.1f ms, %.0f req/s", a.Check.P50, a.Check.P99, a.Check.Max, a.CheckRPS))
		if a.OpenRate > 0 {
			row("", fmt.Sprintf("GET balance, open loop %.0f req/s", a.OpenRate), fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.1f ms", a.OpenBal.P50, a.OpenBal.P99, a.OpenBal.Max))
			row("", fmt.Sprintf("POST check, open loop %.0f req/s", a.OpenRate), fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.1f ms", a.OpenCheck.P50, a.OpenCheck.P99, a.OpenCheck.Max))
		}
		if l := a.Load; l != nil {
			row("", fmt.Sprintf("POST check, open loop %.0f req/s, engine draining %.0f events/s", a.OpenRate, l.ProducedRate),
				fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.1f ms; the drain's freshness p99 %.1f ms", a.LoadCheck.P50, a.LoadCheck.P99, a.LoadCheck.Max, l.Freshness.P99))
		}
	}
	fmt.Fprintln(tw, "\ntarget\twant\tgot\tverdict")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Want, t.Got, mark(t.Met))
	}
	tw.Flush()
}

// markdown renders the tables for bench/README.md.
func markdown(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s, %d CPUs, %s, load average %s before / %s after, %.0f s.\n\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Host.CPUs, r.Host.GoVersion, r.LoadBefore, r.LoadAfter, r.Took)
	if r.Command != "" {
		fmt.Fprintf(&b, "`%s`\n\n", r.Command)
	}
	b.WriteString("| target | want | got | |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, mark(t.Met))
	}
	return b.String()
}

func writeResults(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writePlots(dir, r); err != nil {
		return err
	}
	// The JSON keeps at most ~300 points per series (the plots have all).
	srs := []*SteadyResult{r.Freshness, r.Long}
	if r.API != nil {
		srs = append(srs, r.API.Load)
	}
	for _, sr := range srs {
		if sr != nil {
			for _, ps := range []*[]Point{&sr.Throughput, &sr.P50, &sr.P99, &sr.MaxF, &sr.RSS, &sr.Heap, &sr.BrokerRSS} {
				*ps = thin(*ps, 300)
			}
			for _, m := range []map[string][]Point{sr.CPU, sr.Stages} {
				for k, ps := range m {
					m[k] = thin(ps, 300)
				}
			}
			sr.Batches = thin(sr.Batches, 300)
		}
	}
	js, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var tbl strings.Builder
	printReport(&tbl, r)
	return os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(tbl.String()+"\n"+markdown(r)), 0o644)
}

// thin keeps every k-th point so at most about n remain.
func thin(ps []Point, n int) []Point {
	if len(ps) <= n {
		return ps
	}
	k := (len(ps) + n - 1) / n
	out := make([]Point, 0, n+1)
	for i := 0; i < len(ps); i += k {
		out = append(out, ps[i])
	}
	return out
}
