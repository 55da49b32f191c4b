package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// SteadyResult is a fixed-rate run with the engine consuming as events are
// produced: scenario 2 (freshness at 50% of max) and 4b (the long run).
type SteadyResult struct {
	Name         string  `json:"name"`
	TargetRate   float64 `json:"target_rate"`
	Events       int64   `json:"events"`
	Seconds      float64 `json:"seconds"` // producing
	ProducedRate float64 `json:"produced_rate"`
	DrainSeconds float64 `json:"drain_s"` // after the last send, until all committed
	Applied      int64   `json:"applied"`
	Freshness    Latency `json:"freshness"` // generated → balance Apply returned, after warm-up
	WarmupS      float64 `json:"warmup_s"`
	// Per-second series.
	Throughput []Point `json:"throughput"` // committed events/s
	P50        []Point `json:"fresh_p50_ms"`
	P99        []Point `json:"fresh_p99_ms"`
	MaxF       []Point `json:"fresh_max_ms"`
	RSS        []Point `json:"rss_mib"`
	Heap       []Point `json:"heap_mib"`
	BrokerRSS  []Point `json:"broker_rss_mib,omitempty"`
	RSSStart   float64 `json:"rss_start_mib"`
	RSSMax     float64 `json:"rss_max_mib"`
	RSSEnd     float64 `json:"rss_end_mib"`
	// Drained: every produced event was committed within 2 minutes of the
	// last send (else the engine fell behind for good).
	Drained    bool   `json:"drained"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	// CPU per process over the run (fractions of a core, every 5 s): the
	// bench process is the engine, the load generator and (api) the API
	// server together; Redis is its masters' INFO cpu.
	CPU map[string][]Point `json:"cpu_util,omitempty"`
	// Stages: seconds spent per second of the run in each engine stage's
	// calls (fetch, apply = Redis, archive = ClickHouse, commit), counted
	// when a call returns (a 20 s call shows as 20 in its last second);
	// Batches: engine batches per second.
	Stages  map[string][]Point `json:"stage_s_per_s,omitempty"`
	Batches []Point            `json:"batches_per_s,omitempty"`
	// Over the whole run: engine batches and Lua calls (one per subscription
	// and partition of a batch), and events per call — few events per call
	// (small paced batches) cost Redis far more per event than a backlog's.
	BatchCount    int64   `json:"batch_count"`
	LuaCalls      int64   `json:"lua_calls"`
	EventsPerCall float64 `json:"events_per_call"`
	// CPUPerEvent: µs of CPU per produced event over the whole run.
	CPUPerEvent map[string]float64 `json:"cpu_us_per_event,omitempty"`
}

const warmup = 3 * time.Second

// runSteady produces n events at rate with the engine consuming. during, if
// not nil, runs once the warm-up has passed, alongside; production goes on
// at the same rate until it returns, beyond n if need be.
func runSteady(ctx context.Context, o *Options, w *World, name string, rate float64, n int, during func() error) (*SteadyResult, error) {
	topic, dlq, err := w.Topic(ctx, name, o.World.Partitions)
	if err != nil {
		return nil, err
	}
	// The first seconds (consumer start, first batches) are left out of the
	// overall freshness figures; the per-second series keeps them.
	skip := min(warmup, time.Duration(float64(n)/rate*float64(time.Second))/10)
	res := &SteadyResult{Name: name, TargetRate: rate, WarmupS: skip.Seconds(), LoadBefore: loadAvg(), CPU: map[string][]Point{}}
	o.logf("scenario %s: %d events at %.0f events/s with the engine consuming", name, n, rate)
	r, err := w.startEngine(ctx, topic, dlq, w.Group(name), o.Engine, skip, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r != nil {
			_ = r.stop()
		}
	}()
	// Let the consumer join the group before the clock starts.
	time.Sleep(time.Second)
	r.probe.mu.Lock()
	r.probe.start = time.Now()
	r.probe.perSec = nil
	r.probe.mu.Unlock()

	g := NewGen(GenConfig{Customers: w.Custs, DupRate: o.DupRate, LateRate: o.LateRate, Seed: 11, Tag: w.Run + name[:1], NotBefore: w.Seeded})
	p := newProducer(w.Kafka, topic, 4)
	bar := o.bar(int64(n), name)
	start := time.Now()
	res.Stages = map[string][]Point{}
	lastStage, lastB := stageTimes(r), r.src.fetches.Load()
	calls0, batches0 := r.probe.calls.Load(), lastB
	sample := func(now time.Time, lastC *int64, lastT *time.Time) {
		c := r.src.committed.Load()
		t := now.Sub(start).Seconds()
		secs := now.Sub(*lastT).Seconds()
		res.Throughput = append(res.Throughput, Point{t, float64(c-*lastC) / secs})
		*lastC, *lastT = c, now
		rss := float64(rssBytes(0)) / (1 << 20)
		res.RSS = append(res.RSS, Point{t, rss})
		res.Heap = append(res.Heap, Point{t, float64(heapBytes()) / (1 << 20)})
		if o.BrokerPID > 0 {
			res.BrokerRSS = append(res.BrokerRSS, Point{t, float64(rssBytes(o.BrokerPID)) / (1 << 20)})
		}
		st := stageTimes(r)
		for k, v := range st {
			res.Stages[k] = append(res.Stages[k], Point{t, float64(v-lastStage[k]) / 1e9 / secs})
		}
		lastStage = st
		b := r.src.fetches.Load()
		res.Batches = append(res.Batches, Point{t, float64(b-lastB) / secs})
		lastB = b
		res.RSSMax = max(res.RSSMax, rss)
		res.RSSEnd = rss
		_ = bar.Set64(c)
	}
	res.RSSStart = float64(rssBytes(0)) / (1 << 20)
	procs0, redis0 := sampleProcs(), redisCPU(ctx, w.RC)
	procsL, redisL, lastU := procs0, redis0, start
	util := func(now time.Time) {
		ps, rs := sampleProcs(), redisCPU(ctx, w.RC)
		secs, t := now.Sub(lastU).Seconds(), now.Sub(start).Seconds()
		for name, c := range cpuByName(procsL, ps, redisL, rs) {
			res.CPU[name] = append(res.CPU[name], Point{t, c / secs})
		}
		procsL, redisL, lastU = ps, rs, now
	}
	var duringDone atomic.Bool
	duringErr := make(chan error, 1)
	if during == nil {
		duringDone.Store(true)
		duringErr <- nil
	} else {
		go func() {
			defer duringDone.Store(true)
			select {
			case <-time.After(skip):
				duringErr <- during()
			case <-ctx.Done():
				duringErr <- ctx.Err()
			}
		}()
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var lastC int64
	lastT, lastS := start, start
	sent := 0
	for (sent < n || !duringDone.Load()) && ctx.Err() == nil {
		now := <-tick.C
		due := int(rate*now.Sub(start).Seconds()) - sent
		if duringDone.Load() {
			due = min(due, n-sent)
		}
		if due > 0 {
			msgs := make([]kafka.Message, 0, due)
			for range due {
				msgs = g.Next(msgs, now)
			}
			p.send(msgs)
			sent += due
		}
		if now.Sub(lastS) >= time.Second {
			sample(now, &lastC, &lastT)
			lastS = now
			if now.Sub(lastU) >= 5*time.Second {
				util(now)
			}
		}
	}
	if err := errors.Join(p.close(), <-duringErr); err != nil {
		return res, err
	}
	res.Events = int64(sent)
	res.Seconds = time.Since(start).Seconds()
	res.ProducedRate = float64(sent) / res.Seconds
	endSend := time.Now()
	deadline := endSend.Add(2 * time.Minute)
	for r.src.committed.Load() < int64(sent) && ctx.Err() == nil {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("engine committed %d of %d events 2 minutes after the last send", r.src.committed.Load(), sent)
		}
		time.Sleep(20 * time.Millisecond)
		if now := time.Now(); now.Sub(lastS) >= time.Second {
			sample(now, &lastC, &lastT)
			lastS = now
		}
	}
	res.DrainSeconds = time.Since(endSend).Seconds()
	res.Drained = r.src.committed.Load() >= int64(sent)
	res.BatchCount, res.LuaCalls = r.src.fetches.Load()-batches0, r.probe.calls.Load()-calls0
	if res.LuaCalls > 0 {
		res.EventsPerCall = float64(sent) / float64(res.LuaCalls)
	}
	sample(time.Now(), &lastC, &lastT)
	util(time.Now())
	res.CPUPerEvent = map[string]float64{}
	for name, c := range cpuByName(procs0, procsL, redis0, redisL) {
		res.CPUPerEvent[name] = 1e6 * c / float64(max(sent, 1))
	}
	res.LoadAfter = loadAvg()
	_ = bar.Finish()
	err = r.stop()
	pr := r.probe
	r = nil
	pr.mu.Lock()
	res.Freshness = pr.total.Summary()
	for i := range pr.perSec {
		h := &pr.perSec[i]
		if h.Count() == 0 {
			continue
		}
		t := float64(i) + 0.5
		res.P50 = append(res.P50, Point{t, h.Quantile(.5)})
		res.P99 = append(res.P99, Point{t, h.Quantile(.99)})
		res.MaxF = append(res.MaxF, Point{t, h.Max()})
	}
	pr.mu.Unlock()
	res.Applied = pr.applied.Load()
	o.logf("scenario %s: %d events in %.1fs (%.0f/s produced), drained %.2fs later; freshness p50 %.1f ms p99 %.1f ms max %.1f ms; RSS %.0f→%.0f MiB (max %.0f); load %s → %s; %d batches, %.1f events per Lua call; CPU µs per event %v",
		name, sent, res.Seconds, res.ProducedRate, res.DrainSeconds, res.Freshness.P50, res.Freshness.P99, res.Freshness.Max, res.RSSStart, res.RSSEnd, res.RSSMax, res.LoadBefore, res.LoadAfter, res.BatchCount, res.EventsPerCall, res.CPUPerEvent)
	return res, err
}

// cpuByName is the CPU seconds each process spent between two samples,
// summed by name (ClickHouse may be several processes), with Redis's
// masters' INFO cpu as "redis".
func cpuByName(p0, p1 procSample, r0, r1 map[string]cpuSample) map[string]float64 {
	out := map[string]float64{}
	for _, c := range procDelta(p0, p1, 1, 1) {
		name := c.Name
		if strings.HasPrefix(name, "engine") {
			name = "bench process (engine + load generator)"
		}
		out[name] += c.CPUSeconds
	}
	for _, n := range cpuDelta(r0, r1, nil, 1, 1) {
		if n.Role == "master" && !n.Restarted {
			out["redis"] += n.CPUSeconds
		}
	}
	return out
}

// stageTimes: ns spent so far in each engine stage's calls.
func stageTimes(r *running) map[string]int64 {
	return map[string]int64{"fetch": r.src.tFetch.Load(), "apply": r.probe.tApply.Load(),
		"archive": r.probe.tArchive.Load(), "commit": r.src.tCommit.Load()}
}
