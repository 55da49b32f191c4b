package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/reconcile"
)

// probe wraps the engine's balance store and archive: it counts outcomes and
// records each applied event's freshness (generated → balance call returned).
type probe struct {
	bal  *balance.Store
	arch *archive.Writer

	applied, dupID, dupOffset atomic.Int64
	usageRows, ledgerRows     atomic.Int64
	dead                      atomic.Int64
	calls                     atomic.Int64 // Lua calls (balance batches)
	waits                     atomic.Int64 // WaitReplicas calls
	// time spent in each stage, ns
	tApply, tArchive, tDLQ, tWait atomic.Int64
	dlq                           engine.DeadLetters

	mu     sync.Mutex
	start  time.Time
	total  Hist
	perSec []Hist // by second since start
	skip   time.Duration
}

func (p *probe) Apply(ctx context.Context, batches []balance.Batch) ([]balance.BatchResult, error) {
	t0 := time.Now()
	res, err := p.bal.Apply(ctx, batches)
	now := time.Now()
	p.tApply.Add(int64(now.Sub(t0)))
	p.calls.Add(int64(len(batches)))
	var a, di, do int64
	p.mu.Lock()
	sec := int(now.Sub(p.start) / time.Second)
	for len(p.perSec) <= sec {
		p.perSec = append(p.perSec, Hist{})
	}
	h := &p.perSec[sec]
	for i := range res {
		r := &res[i]
		if r.Err != nil || i >= len(batches) {
			continue
		}
		for j := range r.Lines {
			switch r.Lines[j].Status {
			case balance.Applied:
				a++
				if at, ok := ProducedAt(batches[i].Lines[j].EventID); ok {
					d := now.Sub(at)
					h.Add(d)
					if now.Sub(p.start) >= p.skip {
						p.total.Add(d)
					}
				}
			case balance.DuplicateID:
				di++
			case balance.DuplicateOffset:
				do++
			}
		}
	}
	p.mu.Unlock()
	p.applied.Add(a)
	p.dupID.Add(di)
	p.dupOffset.Add(do)
	return res, err
}

func (p *probe) timed(acc *atomic.Int64) func() {
	t0 := time.Now()
	return func() { acc.Add(int64(time.Since(t0))) }
}

func (p *probe) SendDLQ(ctx context.Context, dls []ingest.DeadLetter) error {
	defer p.timed(&p.tDLQ)()
	if err := p.dlq.SendDLQ(ctx, dls); err != nil {
		return err
	}
	p.dead.Add(int64(len(dls)))
	return nil
}

func (p *probe) WriteUsage(ctx context.Context, rows []archive.RatedRow) error {
	defer p.timed(&p.tArchive)()
	if err := p.arch.WriteUsage(ctx, rows); err != nil {
		return err
	}
	p.usageRows.Add(int64(len(rows)))
	return nil
}

func (p *probe) WriteLedger(ctx context.Context, rows []archive.LedgerRow) error {
	defer p.timed(&p.tArchive)()
	if err := p.arch.WriteLedger(ctx, rows); err != nil {
		return err
	}
	p.ledgerRows.Add(int64(len(rows)))
	return nil
}

// running is an in-process engine over the world, as serve wires it.
type running struct {
	e      *engine.Engine
	src    *countingSource
	cons   *ingest.Consumer
	dlq    *ingest.Writers
	probe  *probe
	cancel context.CancelFunc
	done   chan error
}

// EngineConfig tunes the engine under test.
type EngineConfig struct {
	BatchSize int
	Linger    time.Duration
	// WaitReplicas > 0: before committing, WAIT until this many replicas of
	// every master hold the batch's balance changes (serve's
	// --redis-min-replicas), within WaitTimeout.
	WaitReplicas int
	WaitTimeout  time.Duration
}

func (w *World) startEngine(ctx context.Context, topic, dlqTopic, group string, ec EngineConfig, skip time.Duration, noCommit bool) (*running, error) {
	rater, err := w.Rater(ctx)
	if err != nil {
		return nil, err
	}
	cons, err := ingest.NewConsumer(ingest.ConsumerConfig{Conn: w.Kafka, Topic: topic, Group: group, MaxWait: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	src := &countingSource{Source: cons, noCommit: noCommit}
	dlq := ingest.NewWriters(w.Brokers, topic, dlqTopic, ingest.WithConn(w.Kafka))
	p := &probe{bal: w.Balances, arch: w.Writer, dlq: dlq, start: time.Now(), skip: skip}
	cfg := engine.Config{
		Topic: topic, BatchSize: ec.BatchSize, Linger: ec.Linger, Logger: w.log,
		Refresh: func(ctx context.Context) error { _, _, err := w.Catalog.Sync(ctx, rater); return err },
		// as serve: Redis that lost acknowledged writes is repaired from the archive
		Repair:        &reconcile.Repairer{Store: w.Balances, Conn: w.Conn},
		RedisIdentity: w.Balances.Identity,
	}
	if n, timeout := ec.WaitReplicas, ec.WaitTimeout; n > 0 {
		cfg.WaitReplicas = func(ctx context.Context) error {
			defer p.timed(&p.tWait)()
			p.waits.Add(1)
			return w.Balances.WaitReplicas(ctx, n, timeout)
		}
	}
	e, err := engine.New(cfg, src, p, rater, p, p)
	if err != nil {
		cons.Close()
		dlq.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{e: e, src: src, cons: cons, dlq: dlq, probe: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(rctx) }()
	return r, nil
}

func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.cons.Close()
	r.dlq.Close()
	return err
}
