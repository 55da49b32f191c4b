package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/rating"
)

// TestDebtLimitThroughKafka: an overage subscription with 50 included
// credits and a debt limit of 30 (the plan's) gets 100 one-credit events
// and 10 producer duplicates through Kafka: 50 funded, 30 overage, 20
// unfunded, in Redis and in rated_usage. A second consumer group reading
// the topic again from the start changes nothing (redelivery).
func TestDebtLimitThroughKafka(t *testing.T) {
	h := e2e.New(t, 2)
	ctx := context.Background()
	plan, err := h.Catalog.Plan(ctx, seed.PlanOverage)
	if err != nil {
		t.Fatal(err)
	}
	lim := credit.Credits(30)
	plan.Prepaid.DebtLimit = &lim
	if err := h.Catalog.ReplacePlan(ctx, plan); err != nil {
		t.Fatal(err)
	}
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "spender", Plan: seed.PlanOverage, Included: "50"})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	at := time.Now()
	for i := 0; i < 100; i++ {
		ev := rating.Event{ID: fmt.Sprint("dl-", i), CustomerID: "spender", Name: "email.sent", Timestamp: at}
		msgs = append(msgs, kafka.Message{Key: []byte("spender"), Value: ingest.AppendJSON(nil, &ev)})
		if i%10 == 9 {
			msgs = append(msgs, msgs[i/2]) // a producer's retry
		}
	}
	h.Produce(msgs)

	check := func(when string) {
		t.Helper()
		v, err := h.Balances.Balance(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		if v.Debt != lim || v.Total != -lim || v.Unfunded != credit.Credits(20) {
			t.Fatalf("%s: debt %s total %s unfunded %s; want 30, -30, 20", when, v.Debt, v.Total, v.Unfunded)
		}
		// rated_usage: unfunded_credits is what grants did not fund; the
		// status says whether it became debt (overage) or stayed unfunded.
		var rows, over, unf uint64
		var funded, overCredits, unfCredits decimal.Decimal
		if err := h.Conn.QueryRow(ctx, `SELECT count(), countIf(status = 'overage'), countIf(status = 'unfunded'), sum(funded_credits),
			sumIf(unfunded_credits, status = 'overage'), sumIf(unfunded_credits, status = 'unfunded')
			FROM rated_usage FINAL WHERE subscription_id = ?`, sub).Scan(&rows, &over, &unf, &funded, &overCredits, &unfCredits); err != nil {
			t.Fatal(err)
		}
		if rows != 100 || over != 30 || unf != 20 || !funded.Equal(decimal.NewFromInt(50)) || !overCredits.Equal(decimal.NewFromInt(30)) || !unfCredits.Equal(decimal.NewFromInt(20)) {
			t.Fatalf("%s: rated_usage %d rows (%d overage, %d unfunded), funded %s, overage %s, unfunded %s; want 100 (30, 20), 50, 30, 20",
				when, rows, over, unf, funded, overCredits, unfCredits)
		}
		if r, err := h.Balances.Check(ctx, sub, 1); err != nil || r.Allowed || r.Spendable != 0 {
			t.Fatalf("%s: check of 0.000001 at the limit: %+v %v", when, r, err)
		}
	}

	e, m, src := h.NewEngine("debt-limit-a", engine.Config{})
	stop := run(t, e)
	e2e.WaitConsumed(t, m, len(msgs), 2*time.Minute)
	stop()
	src.Close()
	check("first pass")

	e, m, src = h.NewEngine("debt-limit-b", engine.Config{})
	defer src.Close()
	stop = run(t, e)
	e2e.WaitConsumed(t, m, len(msgs), 2*time.Minute)
	stop()
	check("redelivered")
}
