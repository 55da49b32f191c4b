package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// The hot-path benchmarks. CI runs them once each (make bench-smoke:
// -benchtime=1x) so they keep compiling and working; run them for real with
//
//	go test -run '^$' -bench . -benchtime 2s ./bench/
//
// They report events/s; no figure is asserted.

type noLedger struct{}

func (noLedger) OpenSubscription(context.Context, rating.AccountTerms, *rating.Grant) error {
	return nil
}

// hotWorld is the seed catalog with n subscriptions in Redis, a rater over
// it and a stream of generated messages.
func hotWorld(tb testing.TB, n, events int) (*rating.Rater, []kafka.Message, []string) {
	tb.Helper()
	rc, pfx := testenv.Keyspace(tb)
	ctx := context.Background()
	st, err := catalogstore.New(rc, pfx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := seed.Catalog(ctx, st); err != nil {
		tb.Fatal(err)
	}
	custs := make([]string, n)
	for i := range custs {
		custs[i] = fmt.Sprintf("hot-%03d", i)
		if _, err := seed.Subscribe(ctx, st, noLedger{}, seed.Subscription{Customer: custs[i], Plan: seed.PlanUnfunded, Included: "1000"}); err != nil {
			tb.Fatal(err)
		}
	}
	r := rating.NewRater(nil)
	if _, err := st.Refresh(ctx, r); err != nil {
		tb.Fatal(err)
	}
	g := NewGen(GenConfig{Customers: custs, Seed: 1, Tag: "hot"})
	msgs := make([]kafka.Message, 0, events)
	now := time.Now().Add(time.Second)
	for len(msgs) < events {
		msgs = g.Next(msgs, now)
	}
	for i := range msgs {
		msgs[i].Topic, msgs[i].Partition, msgs[i].Offset = "usage-events", i%4, int64(i/4)
	}
	return r, msgs, custs
}

func perSec(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecode: ingest.Decode of one generated event per op.
func BenchmarkDecode(b *testing.B) {
	g := NewGen(GenConfig{Customers: []string{"a", "b", "c"}, Seed: 1, Tag: "dec"})
	msgs := make([]kafka.Message, 0, 1024)
	for len(msgs) < cap(msgs) {
		msgs = g.Next(msgs, time.Now())
	}
	var ev rating.Event
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ingest.Decode(msgs[i%len(msgs)].Value, &ev); err != nil {
			b.Fatal(err)
		}
	}
	perSec(b, b.N)
}

// BenchmarkRate: rating.Rater.Rate of one decoded event per op.
func BenchmarkRate(b *testing.B) {
	r, msgs, _ := hotWorld(b, 50, 1024)
	evs := make([]rating.Event, len(msgs))
	for i := range msgs {
		if err := ingest.Decode(msgs[i].Value, &evs[i]); err != nil {
			b.Fatal(err)
		}
	}
	lines := make([]rating.Line, 0, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if lines, err = r.Rate(&evs[i%len(evs)], lines[:0]); err != nil {
			b.Fatal(err)
		}
	}
	perSec(b, b.N)
}

// BenchmarkProcessAssembly: engine.Process of a 5,000-message batch with the
// services faked: decode, rate, grouping into balance batches per
// (subscription, partition), splitting draws and building archive rows. One
// op is one batch.
func BenchmarkProcessAssembly(b *testing.B) {
	r, msgs, _ := hotWorld(b, 200, 5000)
	e, err := engine.New(engine.Config{}, enginetest.NopSource{}, enginetest.NopDLQ{}, r, enginetest.AllApplied{}, enginetest.NopArchive{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range msgs {
			msgs[j].Offset = int64(i*len(msgs)+j) / 4
		}
		if err := e.Process(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	perSec(b, b.N*len(msgs))
}

// BenchmarkLuaApply: balance.Store.Apply on the real Redis, the engine's
// shape (batches of a few subscriptions, pipelined) beside one event per
// Lua call. One op is one event.
func BenchmarkLuaApply(b *testing.B) {
	rc, pfx := testenv.Keyspace(b)
	ctx := context.Background()
	s, err := balance.New(rc, balance.Options{Prefix: pfx})
	if err != nil {
		b.Fatal(err)
	}
	subs := make([]string, 20)
	for i := range subs {
		subs[i] = fmt.Sprint("lua-", i)
		if _, err := s.OpenAccount(ctx, balance.AccountSpec{Subscription: subs[i], Customer: subs[i], Policy: balance.Overage, Currency: "USD"}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Grant(ctx, balance.GrantRequest{Key: "g", Subscription: subs[i], Type: balance.Promotional, Amount: credit.MaxAmount / 2}); err != nil {
			b.Fatal(err)
		}
	}
	for _, perCall := range []int{1, 250} {
		b.Run(fmt.Sprintf("events-per-call-%d", perCall), func(b *testing.B) {
			const perRound = 5000 // events per pipelined round trip, as an engine batch
			off := map[string]int64{}
			tag := testenv.RandomID(b)
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(perRound, b.N-done)
				var batches []balance.Batch
				for k := 0; k < n; k += perCall {
					sub := subs[(done+k)/perCall%len(subs)]
					bt := balance.Batch{Subscription: sub, Topic: "bench", Partition: 0, Committed: off[sub]}
					for j := k; j < min(k+perCall, n); j++ {
						bt.Lines = append(bt.Lines, balance.Line{EventID: fmt.Sprintf("%s-%d", tag, done+j), Offset: off[sub], Time: time.Now(), Credits: 1000})
						off[sub]++
					}
					batches = append(batches, bt)
				}
				if _, err := s.Apply(ctx, batches); err != nil {
					b.Fatal(err)
				}
				done += n
			}
			perSec(b, b.N)
		})
	}
}
