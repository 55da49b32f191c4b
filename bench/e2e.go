package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Point is one sample of a time series.
type Point struct {
	T float64 `json:"t_s"` // seconds since the scenario started
	V float64 `json:"v"`
}

// E2EResult is scenario 1: a backlog of events drained by the engine,
// Kafka → decode → rate → Redis → ClickHouse → commit.
type E2EResult struct {
	Events        int64   `json:"events"` // messages produced (unique + duplicates)
	Unique        int64   `json:"unique"`
	Duplicates    int64   `json:"duplicates"`
	Late          int64   `json:"late"`
	ProducePerSec float64 `json:"produce_per_s"` // kafka-go producer, 4 writers, acks=all
	Seconds       float64 `json:"seconds"`       // engine start → last commit
	EventsPerSec  float64 `json:"events_per_s"`  // Events / Seconds
	SteadyPerSec  float64 `json:"steady_per_s"`  // between 10% and 90% committed
	Applied       int64   `json:"applied"`
	DupID         int64   `json:"dup_id"`
	DupOffset     int64   `json:"dup_offset"`
	UsageRows     int64   `json:"usage_rows"`
	DeadLetters   int64   `json:"dead_letters"`   // expected 0: every generated event is valid
	ArchivedFinal uint64  `json:"archived_final"` // rated_usage FINAL rows
	Exact         bool    `json:"exact"`
	Series        []Point `json:"series"` // committed events/s per second
	RedisBytes    int64   `json:"redis_used_memory_delta"`
	// Where the drain's wall time went: time inside each stage's calls. If
	// the engine runs its stages one after the other they add up to Seconds;
	// if it overlaps them (pipelining), to more, and CPU is then 0.
	Stages        Stages  `json:"stages"`
	Batches       int64   `json:"batches"`         // engine batches (fetches)
	LuaCalls      int64   `json:"lua_calls"`       // balance batches: one Lua call per (subscription, partition)
	EventsPerCall float64 `json:"events_per_call"` // average events per Lua call
}

// Stages are seconds of wall time per engine stage.
type Stages struct {
	Fetch   float64 `json:"fetch"`
	CPU     float64 `json:"decode_rate_assemble"` // the rest: decode, rate, batch assembly, row building
	Balance float64 `json:"balance"`
	Archive float64 `json:"archive"`
	DLQ     float64 `json:"dlq"`
	Commit  float64 `json:"commit"`
}

func produceBacklog(ctx context.Context, o *Options, w *World, topic string, g *Gen, n int) (float64, error) {
	p := newProducer(w.Kafka, topic, 4)
	bar := o.bar(int64(n), "produce")
	start := time.Now()
	const chunk = 2000
	for sent := 0; sent < n && ctx.Err() == nil; {
		k := min(chunk, n-sent)
		msgs := make([]kafka.Message, 0, k)
		now := time.Now()
		for range k {
			msgs = g.Next(msgs, now)
		}
		p.send(msgs)
		sent += k
		_ = bar.Set64(p.sent.Load())
	}
	err := p.close()
	took := time.Since(start)
	_ = bar.Set64(p.sent.Load())
	_ = bar.Finish()
	if err != nil {
		return 0, err
	}
	if got := p.sent.Load(); got != int64(n) {
		return 0, fmt.Errorf("produced %d of %d", got, n)
	}
	return float64(n) / took.Seconds(), ctx.Err()
}

func runE2E(ctx context.Context, o *Options, w *World, startProf func() error, stopProf func()) (*E2EResult, string, error) {
	topic, dlq, err := w.Topic(ctx, "e2e", o.World.Partitions)
	if err != nil {
		return nil, "", err
	}
	g := NewGen(GenConfig{Customers: w.Custs, DupRate: o.DupRate, LateRate: o.LateRate, Seed: 1, Tag: w.Run + "e", NotBefore: w.Seeded})
	o.logf("scenario 1 (e2e): producing a backlog of %d events to %s (%d partitions)", o.Events, topic, o.World.Partitions)
	prate, err := produceBacklog(ctx, o, w, topic, g, o.Events)
	if err != nil {
		return nil, topic, err
	}
	res := &E2EResult{Events: int64(o.Events), Unique: g.Events, Duplicates: g.Dups, Late: g.Late, ProducePerSec: prate}
	memBefore := usedMemory(ctx, w.RC)
	o.logf("scenario 1 (e2e): draining with the engine (batch %d, linger %s)", o.Engine.BatchSize, o.Engine.Linger)
	if startProf != nil {
		if err := startProf(); err != nil {
			return nil, topic, err
		}
	}
	r, err := w.startEngine(ctx, topic, dlq, w.Group("e2e"), o.Engine, 0)
	if err != nil {
		if stopProf != nil {
			stopProf()
		}
		return nil, topic, err
	}
	start := time.Now()
	bar := o.bar(int64(o.Events), "engine")
	var t10, t90 time.Time
	var last int64
	lastT := start
	timeout := time.Duration(max(120, o.Events/5000)) * time.Second
	tick := time.NewTicker(50 * time.Millisecond)
	var done time.Time
	for done.IsZero() {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		now := time.Now()
		c := r.src.committed.Load()
		_ = bar.Set64(c)
		if t10.IsZero() && c >= int64(o.Events)/10 {
			t10 = now
		}
		if t90.IsZero() && c >= int64(o.Events)*9/10 {
			t90 = now
		}
		if now.Sub(lastT) >= time.Second || c >= int64(o.Events) {
			res.Series = append(res.Series, Point{T: now.Sub(start).Seconds(), V: float64(c-last) / now.Sub(lastT).Seconds()})
			last, lastT = c, now
		}
		if c >= int64(o.Events) {
			done = now
		}
		if now.Sub(start) > timeout {
			break
		}
	}
	tick.Stop()
	if stopProf != nil {
		stopProf()
	}
	_ = bar.Finish()
	stopErr := r.stop()
	if done.IsZero() {
		return res, topic, fmt.Errorf("engine committed %d of %d events within %s (stop: %v)", r.src.committed.Load(), o.Events, timeout, stopErr)
	}
	if stopErr != nil {
		return res, topic, stopErr
	}
	res.Seconds = done.Sub(start).Seconds()
	res.EventsPerSec = float64(o.Events) / res.Seconds
	if t90.After(t10) {
		res.SteadyPerSec = float64(o.Events) * 0.8 / t90.Sub(t10).Seconds()
	}
	res.Applied, res.DupID, res.DupOffset = r.probe.applied.Load(), r.probe.dupID.Load(), r.probe.dupOffset.Load()
	res.UsageRows = r.probe.usageRows.Load()
	res.RedisBytes = usedMemory(ctx, w.RC) - memBefore
	if err := w.Conn.QueryRow(ctx, "SELECT count() FROM rated_usage FINAL").Scan(&res.ArchivedFinal); err != nil {
		return res, topic, err
	}
	res.DeadLetters = r.probe.dead.Load()
	sec := func(a int64) float64 { return float64(a) / 1e9 }
	res.Stages = Stages{Fetch: sec(r.src.tFetch.Load()), Balance: sec(r.probe.tApply.Load()), Archive: sec(r.probe.tArchive.Load()),
		DLQ: sec(r.probe.tDLQ.Load()), Commit: sec(r.src.tCommit.Load())}
	res.Stages.CPU = max(0, res.Seconds-res.Stages.Fetch-res.Stages.Balance-res.Stages.Archive-res.Stages.DLQ-res.Stages.Commit)
	res.Batches, res.LuaCalls = r.src.fetches.Load(), r.probe.calls.Load()
	if res.LuaCalls > 0 {
		res.EventsPerCall = float64(res.Events) / float64(res.LuaCalls)
	}
	res.Exact = res.Applied == res.Unique && res.DupID == res.Duplicates && res.ArchivedFinal == uint64(res.Unique) && res.DeadLetters == 0
	o.logf("scenario 1 (e2e): stages %+v s; %d batches, %d Lua calls, %.1f events per call", res.Stages, res.Batches, res.LuaCalls, res.EventsPerCall)
	o.logf("scenario 1 (e2e): %d events in %.1fs = %.0f events/s (steady %.0f); exact=%v (applied %d/%d, dup ids %d/%d, archived %d, dead letters %d)",
		o.Events, res.Seconds, res.EventsPerSec, res.SteadyPerSec, res.Exact, res.Applied, res.Unique, res.DupID, res.Duplicates, res.ArchivedFinal, res.DeadLetters)
	return res, topic, nil
}
