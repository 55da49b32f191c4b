package bench

import (
	"context"
	"fmt"
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
}

const warmup = 3 * time.Second

func runSteady(ctx context.Context, o *Options, w *World, name string, rate float64, n int) (*SteadyResult, error) {
	topic, dlq, err := w.Topic(ctx, name, o.World.Partitions)
	if err != nil {
		return nil, err
	}
	// The first seconds (consumer start, first batches) are left out of the
	// overall freshness figures; the per-second series keeps them.
	skip := min(warmup, time.Duration(float64(n)/rate*float64(time.Second))/10)
	res := &SteadyResult{Name: name, TargetRate: rate, WarmupS: skip.Seconds()}
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
	sample := func(now time.Time, lastC *int64, lastT *time.Time) {
		c := r.src.committed.Load()
		t := now.Sub(start).Seconds()
		res.Throughput = append(res.Throughput, Point{t, float64(c-*lastC) / now.Sub(*lastT).Seconds()})
		*lastC, *lastT = c, now
		rss := float64(rssBytes(0)) / (1 << 20)
		res.RSS = append(res.RSS, Point{t, rss})
		res.Heap = append(res.Heap, Point{t, float64(heapBytes()) / (1 << 20)})
		if o.BrokerPID > 0 {
			res.BrokerRSS = append(res.BrokerRSS, Point{t, float64(rssBytes(o.BrokerPID)) / (1 << 20)})
		}
		res.RSSMax = max(res.RSSMax, rss)
		res.RSSEnd = rss
		_ = bar.Set64(c)
	}
	res.RSSStart = float64(rssBytes(0)) / (1 << 20)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var lastC int64
	lastT, lastS := start, start
	sent := 0
	for sent < n && ctx.Err() == nil {
		now := <-tick.C
		due := min(int(rate*now.Sub(start).Seconds()), n) - sent
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
		}
	}
	if err := p.close(); err != nil {
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
	sample(time.Now(), &lastC, &lastT)
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
	o.logf("scenario %s: %d events in %.1fs (%.0f/s produced), drained %.2fs later; freshness p50 %.1f ms p99 %.1f ms max %.1f ms; RSS %.0f→%.0f MiB (max %.0f)",
		name, sent, res.Seconds, res.ProducedRate, res.DrainSeconds, res.Freshness.P50, res.Freshness.P99, res.Freshness.Max, res.RSSStart, res.RSSEnd, res.RSSMax)
	return res, err
}
