package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/rating"
)

// TestAggregationsEndToEnd: a UNIQUE_COUNT meter (2 AIT per active user and
// month) and a MAX and an AVG reporting meter through Kafka, the rater, the
// Redis balance and ClickHouse. The same user twice, a producer duplicate,
// the whole stream redelivered to a second consumer group and a second
// billing period: each user is charged once per period, and the archive
// answers the reporting meters.
func TestAggregationsEndToEnd(t *testing.T) {
	h := e2e.New(t, 2)
	ctx := context.Background()
	for _, f := range []rating.Feature{
		{ID: "active-users", Name: "Active users", Meter: rating.Meter{Kind: rating.MeterEventBased, EventName: "login", Aggregation: rating.AggUniqueCount, Dimension: "user",
			Filters: []rating.DimFilter{{Key: "env", Op: rating.FilterNotIn, Values: []string{"test"}}}}},
		{ID: "peak-seats", Name: "Peak seats", Meter: rating.Meter{Kind: rating.MeterEventBased, EventName: "seats", Aggregation: rating.AggMax, Dimension: "n"}},
		{ID: "avg-seats", Name: "Average seats", Meter: rating.Meter{Kind: rating.MeterEventBased, EventName: "seats", Aggregation: rating.AggAvg, Dimension: "n"}},
	} {
		if _, err := h.Catalog.CreateFeature(ctx, &f); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := h.Catalog.Plan(ctx, seed.PlanUnfunded)
	if err != nil {
		t.Fatal(err)
	}
	plan.ID = "users-plan"
	plan.Prepaid.Consumption = []rating.ConsumptionRate{{FeatureID: "active-users", CreditsPerUnit: credit.Credits(2)}}
	if _, err := h.Catalog.CreatePlan(ctx, plan); err != nil {
		t.Fatal(err)
	}
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "acme", Plan: "users-plan", Included: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.Catalog.Subscription(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := s.StartAt.Add(100*time.Millisecond), s.StartAt.AddDate(0, 1, 0).Add(time.Minute)
	var msgs []kafka.Message
	add := func(id, name string, at time.Time, dims ...rating.Dim) {
		ev := rating.Event{ID: id, CustomerID: "acme", Name: name, Timestamp: at, Dims: dims}
		msgs = append(msgs, kafka.Message{Key: []byte("acme"), Value: ingest.AppendJSON(nil, &ev)})
	}
	user := func(u string) rating.Dim { return rating.Dim{Key: "user", Str: u} }
	ms := func(n int) time.Duration { return time.Duration(n) * 100 * time.Millisecond }
	add("l1", "login", p1, user("ann"))
	add("l2", "login", p1.Add(ms(1)), user("ann")) // the same user again
	add("l3", "login", p1.Add(ms(2)), user("bob"))
	add("l3", "login", p1.Add(ms(2)), user("bob"))                                                // a producer duplicate
	add("l4", "login", p1.Add(ms(3)), user("cat"), rating.Dim{Key: "env", Str: "test"})           // filtered out: dead-lettered unratable
	add("s1", "seats", p1.Add(ms(4)), rating.Dim{Key: "n", Num: rating.NumberOf(3), IsNum: true}) // reporting only: no credits
	add("s2", "seats", p1.Add(ms(5)), rating.Dim{Key: "n", Num: rating.NumberOf(8), IsNum: true})
	add("s3", "seats", p1.Add(ms(6)), rating.Dim{Key: "n", Str: "4"})
	time.Sleep(time.Until(p1.Add(time.Second))) // every event is in the past: archived at its own time
	h.Produce(msgs)
	consume := func(group string, n int, cfg engine.Config) {
		e, m, src := h.NewEngine(group, cfg)
		stop := run(t, e)
		e2e.WaitConsumed(t, m, n, time.Minute)
		stop()
		src.Close()
	}
	consume("agg-1", len(msgs), engine.Config{})

	// a month later (the balance's and the engine's clocks moved on): the
	// second period counts ann again, once
	later := func() time.Time { return time.Now().AddDate(0, 1, 0).Add(2 * time.Minute) }
	if h.Balances, err = balance.New(h.RC, balance.Options{Prefix: h.Prefix, GraceWindow: 15 * time.Minute, Now: later}); err != nil {
		t.Fatal(err)
	}
	first := len(msgs)
	add("l5", "login", p2, user("ann"))
	add("l6", "login", p2.Add(time.Second), user("ann"))
	h.Produce(msgs[first:])
	consume("agg-1", len(msgs)-first, engine.Config{Now: later})
	consume("agg-2", len(msgs), engine.Config{Now: later}) // everything redelivered to the balance

	v, err := h.Balances.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if want := credit.Credits(1000 - 2*3); v.Total != want {
		t.Errorf("balance %s, want %s (ann and bob in period 1, ann in period 2)", v.Total, want)
	}
	var n uint64
	var credits decimal.Decimal
	if err := h.Conn.QueryRow(ctx, "SELECT count(), sum(credits) FROM rated_usage FINAL WHERE subscription_id = ? AND feature = 'active-users'", sub).Scan(&n, &credits); err != nil {
		t.Fatal(err)
	}
	if n != 5 || !credits.Equal(decimal.NewFromInt(6)) {
		t.Errorf("rated_usage: %d active-users rows for %s credits, want 5 for 6", n, credits)
	}
	if got := h.DeadLetters(1); got[ingest.ReasonUnratable] != 1 {
		t.Errorf("dead letters %v, want the filtered-out login", got)
	}
	for _, tc := range []struct {
		feature, agg, window string
		want                 []string
	}{
		{"active-users", "UNIQUE_COUNT", archive.WindowMonth, []string{"2", "1"}},
		{"peak-seats", "MAX", "", []string{"8"}},
		{"peak-seats", "LATEST", "", []string{"4"}},
		{"avg-seats", "AVG", "", []string{"5"}},
	} {
		rows, err := archive.MeterValues(ctx, h.Conn, archive.MeterQuery{Subscription: sub, Feature: tc.feature, Aggregation: tc.agg,
			From: s.StartAt.Add(-time.Hour), To: p2.Add(time.Hour), Window: tc.window})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.Value.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s %s by %q: %v, want %v", tc.feature, tc.agg, tc.window, got, tc.want)
		}
	}
}
