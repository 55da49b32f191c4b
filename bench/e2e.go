package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
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
	// GenUsPerEvent: the bench process's CPU per event while producing the
	// backlog (load generator + kafka-go producer): what the paced runs'
	// bench-process CPU holds besides the engine's.
	GenUsPerEvent float64 `json:"gen_us_per_event"`
	Seconds       float64 `json:"seconds"`      // engine start → last commit
	EventsPerSec  float64 `json:"events_per_s"` // Events / Seconds
	SteadyPerSec  float64 `json:"steady_per_s"` // between 10% and 90% committed
	Applied       int64   `json:"applied"`
	DupID         int64   `json:"dup_id"`
	DupOffset     int64   `json:"dup_offset"`
	UsageRows     int64   `json:"usage_rows"`
	DeadLetters   int64   `json:"dead_letters"`   // expected 0: every generated event is valid
	ArchivedFinal uint64  `json:"archived_final"` // rated_usage FINAL rows
	Exact         bool    `json:"exact"`          // Check.Exact
	// Check is the exactly-once verdict from the stores. Applied, DupID and
	// DupOffset above are Apply's statuses, for information: a replay
	// answers DuplicateOffset for an event that counted once.
	Check      *Exactness `json:"check"`
	Series     []Point    `json:"series"` // committed events/s per second
	RedisBytes int64      `json:"redis_used_memory_delta"`
	// Where the drain's wall time went: time inside each stage's calls. If
	// the engine runs its stages one after the other they add up to Seconds;
	// if it overlaps them (pipelining), to more, and CPU is then 0.
	Stages        Stages  `json:"stages"`
	Batches       int64   `json:"batches"`         // engine batches (fetches)
	LuaCalls      int64   `json:"lua_calls"`       // balance batches: one Lua call per (subscription, partition)
	EventsPerCall float64 `json:"events_per_call"` // average events per Lua call
	// Redis CPU over the drain (engine start → stopped), per node from INFO
	// cpu; per event = masters' CPU / Events (replicas apart).
	RedisCPU               []NodeCPU `json:"redis_cpu"`
	RedisUsPerEvent        float64   `json:"redis_us_per_event"`
	RedisReplicaUsPerEvent float64   `json:"redis_replica_us_per_event"`
	// ProcCPU: the engine, broker and ClickHouse processes' CPU per event
	// over the drain (/proc), beside Redis's.
	ProcCPU []ProcCPU `json:"process_cpu"`
	// WaitReplicas is --redis-min-replicas of this drain (0: no WAIT);
	// Waits the WaitReplicas calls (one per batch, more if retried), whose
	// time is Stages.Wait.
	WaitReplicas int   `json:"wait_replicas"`
	Waits        int64 `json:"waits"`
}

// Stages are seconds of wall time per engine stage.
type Stages struct {
	Fetch   float64 `json:"fetch"`
	CPU     float64 `json:"decode_rate_assemble"` // the rest: decode, rate, batch assembly, row building
	Balance float64 `json:"balance"`
	Archive float64 `json:"archive"`
	DLQ     float64 `json:"dlq"`
	Wait    float64 `json:"wait"` // WAIT for replicas (--redis-min-replicas)
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

// runE2E produces a backlog to a topic of its own (name) and drains it with
// an engine configured by ec; the stream is seeded by seed.
func runE2E(ctx context.Context, o *Options, w *World, name string, seed uint64, ec EngineConfig, startProf func() error, stopProf func()) (*E2EResult, string, error) {
	topic, dlq, err := w.Topic(ctx, name, o.World.Partitions)
	if err != nil {
		return nil, "", err
	}
	g := NewGen(GenConfig{Customers: w.Custs, DupRate: o.DupRate, LateRate: o.LateRate, Seed: seed, Tag: w.Run + name, NotBefore: w.Seeded})
	o.logf("scenario 1 (%s): producing a backlog of %d events to %s (%d partitions)", name, o.Events, topic, o.World.Partitions)
	gen0 := sampleProcs()[os.Getpid()].CPUSeconds
	prate, err := produceBacklog(ctx, o, w, topic, g, o.Events)
	if err != nil {
		return nil, topic, err
	}
	res := &E2EResult{Events: int64(o.Events), Unique: g.Events, Duplicates: g.Dups, Late: g.Late, ProducePerSec: prate, WaitReplicas: ec.WaitReplicas,
		GenUsPerEvent: 1e6 * (sampleProcs()[os.Getpid()].CPUSeconds - gen0) / float64(max(o.Events, 1))}
	o.logf("scenario 1 (%s): the load generator and producer cost %.2f µs of this process's CPU per event", name, res.GenUsPerEvent)
	if o.crashFirst > 0 {
		if err := crashedDrain(ctx, o, w, topic, dlq, name, ec, int64(o.crashFirst)); err != nil {
			return nil, topic, err
		}
	}
	memBefore := usedMemory(ctx, w.RC)
	cpuBefore := redisCPU(ctx, w.RC)
	procBefore := sampleProcs()
	o.logf("scenario 1 (%s): draining with the engine (batch %d, linger %s, WAIT for %d replicas)", name, ec.BatchSize, ec.Linger, ec.WaitReplicas)
	if startProf != nil {
		if err := startProf(); err != nil {
			return nil, topic, err
		}
	}
	r, err := w.startEngine(ctx, topic, dlq, w.Group(name), ec, 0, false)
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
	procAfter := sampleProcs()
	stopErr := r.stop()
	cpuAfter, cpuSecs := redisCPU(ctx, w.RC), time.Since(start).Seconds()
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
		DLQ: sec(r.probe.tDLQ.Load()), Wait: sec(r.probe.tWait.Load()), Commit: sec(r.src.tCommit.Load())}
	res.Stages.CPU = max(0, res.Seconds-res.Stages.Fetch-res.Stages.Balance-res.Stages.Archive-res.Stages.DLQ-res.Stages.Wait-res.Stages.Commit)
	res.Batches, res.LuaCalls, res.Waits = r.src.fetches.Load(), r.probe.calls.Load(), r.probe.waits.Load()
	if res.LuaCalls > 0 {
		res.EventsPerCall = float64(res.Events) / float64(res.LuaCalls)
	}
	for i, u := range g.Want {
		w.Want[i].Events += u.Events
		w.Want[i].Micro += u.Micro
	}
	if res.Check, err = verifyExact(ctx, w, topic, g.Want, res.DeadLetters); err != nil {
		return res, topic, err
	}
	res.Exact = res.Check.Exact
	res.RedisCPU = cpuDelta(cpuBefore, cpuAfter, shardEvents(ctx, w.RC, w.Subs, g.Want, res.Events), res.Events, cpuSecs)
	for _, n := range res.RedisCPU {
		if n.Restarted {
			o.logf("scenario 1 (%s): Redis %s %s restarted during the drain: its CPU is not measured", name, n.Role, n.Addr)
			continue
		}
		if n.Role == "master" {
			res.RedisUsPerEvent += n.UsPerEventAll
		} else {
			res.RedisReplicaUsPerEvent += n.UsPerEventAll
		}
		o.logf("scenario 1 (%s): Redis %s %s: %.2f s CPU (%.0f%% of a core), %d events, %.2f µs per event on the shard, %.2f µs per event of the drain", name,
			n.Role, n.Addr, n.CPUSeconds, 100*n.Util, n.Events, n.UsPerEvent, n.UsPerEventAll)
	}
	res.ProcCPU = procDelta(procBefore, procAfter, res.Events, res.Seconds)
	sort.Slice(res.ProcCPU, func(i, j int) bool { return res.ProcCPU[i].Name < res.ProcCPU[j].Name })
	for _, p := range res.ProcCPU {
		o.logf("scenario 1 (%s): %s pid %d: %.2f s CPU (%.0f%% of a core), %.2f µs per event", name, p.Name, p.PID, p.CPUSeconds, 100*p.Util, p.UsPerEvent)
	}
	if !res.Exact {
		o.logf("scenario 1 (%s): NOT exact: %d subscriptions differ from what was sent, first %s; dead letters %d", name, res.Check.Mismatched, res.Check.First, res.DeadLetters)
	}
	o.logf("scenario 1 (%s): stages %+v s; %d batches, %d Lua calls, %.1f events per call", name, res.Stages, res.Batches, res.LuaCalls, res.EventsPerCall)
	o.logf("scenario 1 (%s): %d events in %.1fs = %.0f events/s (steady %.0f); exact=%v (stores: archived %d rows of %d unique, Redis drew %s of %s credits; Apply statuses: applied %d, replayed %d, dup ids %d/%d)", name,
		o.Events, res.Seconds, res.EventsPerSec, res.SteadyPerSec, res.Exact, res.Check.ArchivedRows, res.Unique, res.Check.RedisMicro, res.Check.WantAllMicro,
		res.Applied, res.DupOffset, res.DupID, res.Duplicates)
	return res, topic, nil
}

// crashedDrain runs an engine on the e2e group that writes balances and the
// archive but never commits an offset, until n events are done, then stops
// it: the next engine on the group replays them.
func crashedDrain(ctx context.Context, o *Options, w *World, topic, dlq, name string, ec EngineConfig, n int64) error {
	r, err := w.startEngine(ctx, topic, dlq, w.Group(name), ec, 0, true)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); r.src.committed.Load() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = r.stop()
			return fmt.Errorf("crashed drain: %d of %d events within a minute", r.src.committed.Load(), n)
		}
	}
	o.logf("scenario 1 (%s): an engine drained %d events without committing and stopped", name, r.src.committed.Load())
	return r.stop()
}
