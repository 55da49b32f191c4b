package engine_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/lowbalance"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// BenchmarkEngineMetrics measures what the metrics cost the hot path: each
// op runs engine.Process on one 5,000-event batch with metrics off and one
// with metrics on (the order alternating), so both see the same machine
// state, and reports the on/off time ratio. "fake" has the services faked
// (decode, rate, assemble only: the worst case for the relative cost);
// "redis" draws from the real Redis with the archive faked.
//
//	go test -run '^$' -bench EngineMetrics -benchtime 200x ./engine/
func BenchmarkEngineMetrics(b *testing.B) {
	b.Run("fake", func(b *testing.B) { benchMetrics(b, false) })
	b.Run("redis", func(b *testing.B) { benchMetrics(b, true) })
}

const benchBatch = 5000

func benchMetrics(b *testing.B, real bool) {
	rc, pfx := testenv.Keyspace(b)
	ctx := context.Background()
	st, err := catalogstore.New(rc, pfx)
	if err != nil {
		b.Fatal(err)
	}
	store, err := balance.New(rc, balance.Options{Prefix: pfx})
	if err != nil {
		b.Fatal(err)
	}
	if err := seed.Catalog(ctx, st); err != nil {
		b.Fatal(err)
	}
	acc := &accounts.Accounts{Store: store, Archive: enginetest.NopArchive{}}
	custs := make([]string, 200)
	for i := range custs {
		custs[i] = fmt.Sprintf("bm-%03d", i)
		if _, err := seed.Subscribe(ctx, st, acc, seed.Subscription{Customer: custs[i], Plan: seed.PlanUnfunded, Included: "1000000000"}); err != nil {
			b.Fatal(err)
		}
	}
	rater := rating.NewRater(nil)
	if _, err := st.Refresh(ctx, rater); err != nil {
		b.Fatal(err)
	}
	var bal engine.Balances = enginetest.AllApplied{}
	if real {
		bal = store
	}
	// Separate topics keep the two engines' Redis offset watermarks apart.
	newEngine := func(topic string, m *engine.Metrics) *engine.Engine {
		e, err := engine.New(engine.Config{Topic: topic, Metrics: m}, enginetest.NopSource{}, enginetest.NopDLQ{}, rater, bal, enginetest.NopArchive{})
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	reg := prometheus.NewRegistry()
	m := engine.NewMetrics(reg)
	accounts.NewAccountMetrics(reg, m.LowCrossings)
	reg.MustRegister(lowbalance.NewCollector(store, nil, lowbalance.Options{}))
	off, on := newEngine("usage-off", nil), newEngine("usage-on", m)

	batch := func(topic string, op int) []kafka.Message {
		msgs := make([]kafka.Message, benchBatch)
		now := time.Now()
		for j := range msgs {
			// Keyed by customer, as producers do: a customer stays on one partition.
			ci := j % len(custs)
			ev := rating.Event{ID: fmt.Sprintf("%s-%d-%d", topic, op, j), CustomerID: custs[ci], Name: "email.sent", Timestamp: now}
			off := int64(op*benchBatch + j)
			msgs[j] = kafka.Message{Topic: topic, Partition: ci % 4, Offset: off, HighWaterMark: off + 100, Time: now,
				Key: []byte(custs[ci]), Value: ingest.AppendJSON(nil, &ev)}
		}
		return msgs
	}
	run := func(e *engine.Engine, msgs []kafka.Message) time.Duration {
		start := time.Now()
		if err := e.Process(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var tOff, tOn time.Duration
	var ratios [2][]float64 // by order: off first, on first
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		mOff, mOn := batch("usage-off", i), batch("usage-on", i)
		runtime.GC() // the garbage of making the batches is neither side's
		b.StartTimer()
		var dOff, dOn time.Duration
		if i%2 == 0 {
			dOff = run(off, mOff)
			dOn = run(on, mOn)
		} else {
			dOn = run(on, mOn)
			dOff = run(off, mOff)
		}
		tOff, tOn = tOff+dOff, tOn+dOn
		ratios[i%2] = append(ratios[i%2], float64(dOn)/float64(dOff))
	}
	b.StopTimer()
	b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N*benchBatch), "off-ns/event")
	b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N*benchBatch), "on-ns/event")
	b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
	// Robust to bursts of load from other processes (the median of the
	// per-pair ratios) and to the order within a pair (the geometric mean of
	// both orders' medians).
	if b.N >= 2 {
		med := func(r []float64) float64 { sort.Float64s(r); return r[len(r)/2] }
		b.ReportMetric(math.Sqrt(med(ratios[0])*med(ratios[1])), "median-on/off")
	}
}
