package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/reconcile"
)

// Issue 17 item 1, through the broker, the engine, Redis and ClickHouse: a
// plan change splits a customer's events by their time (a late event
// within the grace window still charges the old subscription); events at
// or after an end are dead-lettered subscription_ended, by customer and by
// explicit subscription id; a redelivery (a second consumer group reading
// the same topic) and a producer's duplicate charge nothing twice.
func TestSubscriptionLifecycleEndToEnd(t *testing.T) {
	h := e2e.New(t, 2)
	ctx := context.Background()
	old, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "acme", Plan: seed.PlanUnfunded, Included: "100", GrantType: "purchased"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	ch, err := h.Catalog.ChangePlan(ctx, old, &rating.Subscription{ID: "sub-acme-2", PlanID: seed.PlanOverage,
		Included: rating.IncludedCredits{Enabled: true, GrantType: rating.GrantPromotional, Amount: credit.Credits(50), Expiration: rating.Expiration{Rule: rating.ExpireNever}}}, time.Time{}, "change-1")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := rating.InitialGrant(ch.Subscription, ch.Plan)
	if err := h.Accounts.OpenSubscription(ctx, rating.Terms(ch.Subscription, ch.Plan), &g); err != nil {
		t.Fatal(err)
	}
	change := *ch.Previous.EndAt
	time.Sleep(20 * time.Millisecond)
	end, err := h.Catalog.CancelSubscription(ctx, "sub-acme-2", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	stop := *end.EndAt
	time.Sleep(20 * time.Millisecond)

	var msgs []kafka.Message
	add := func(id, sub string, ts time.Time) {
		ev := rating.Event{ID: id, CustomerID: "acme", SubscriptionID: sub, Name: "email.sent", Timestamp: ts}
		msgs = append(msgs, kafka.Message{Key: []byte("acme"), Value: ingest.AppendJSON(nil, &ev)})
	}
	add("late-old", "", change.Add(-10*time.Millisecond)) // before the change, arriving after it: the old plan
	add("late-old", "", change.Add(-10*time.Millisecond)) // the producer's duplicate
	add("edge-old", "", change.Add(-time.Microsecond))
	add("new", "", change.Add(5*time.Millisecond))
	add("old-by-id-after", old, change.Add(5*time.Millisecond)) // ended
	add("after-end", "", stop.Add(time.Millisecond))            // ended
	add("after-end-by-id", "sub-acme-2", stop)                  // ended
	h.Produce(msgs)

	consume := func(group string) *engine.Metrics {
		rater := rating.NewRater(nil)
		rater.SetGraceWindow(15 * time.Minute)
		if _, err := h.Catalog.Refresh(ctx, rater); err != nil {
			t.Fatal(err)
		}
		m := engine.NewMetrics(prometheus.NewRegistry())
		src, err := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{h.Broker.Addr()}, Topic: e2e.Topic, Group: group, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		w := ingest.NewWriters([]string{h.Broker.Addr()}, e2e.Topic, e2e.DLQTopic)
		defer w.Close()
		e, err := engine.New(engine.Config{Topic: e2e.Topic, Metrics: m}, src, w, rater, h.Balances, h.Writer)
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, e)
		e2e.WaitConsumed(t, m, len(msgs), time.Minute)
		stop()
		return m
	}
	check := func(when string) {
		t.Helper()
		for sub, want := range map[string]credit.Amount{old: credit.Credits(100 - 2), "sub-acme-2": credit.Credits(50 - 1)} {
			v, err := h.Balances.Balance(ctx, sub)
			if err != nil {
				t.Fatal(err)
			}
			if v.Total != want {
				t.Errorf("%s: balance of %s = %s, want %s", when, sub, v.Total, want)
			}
		}
		var n uint64
		if err := h.Conn.QueryRow(ctx, "SELECT count() FROM rated_usage FINAL WHERE event_id IN ('late-old', 'edge-old') AND subscription_id = ?", old).Scan(&n); err != nil || n != 2 {
			t.Errorf("%s: %d rows of the old subscription's events (%v), want 2", when, n, err)
		}
		if err := h.Conn.QueryRow(ctx, "SELECT count() FROM rated_usage FINAL WHERE event_id = 'new' AND subscription_id = 'sub-acme-2'").Scan(&n); err != nil || n != 1 {
			t.Errorf("%s: %d rows of the successor's event (%v), want 1", when, n, err)
		}
	}
	consume("lifecycle-1")
	check("first pass")
	if got := h.DeadLetters(3); got[ingest.ReasonSubEnded] != 3 {
		t.Errorf("dead letters %v, want 3 subscription_ended", got)
	}
	consume("lifecycle-2") // every message again
	check("after redelivery")

	// The old plan carries remaining credits over (the default): once the
	// old subscription's books close, its 98 credits move to the successor
	// as a grant of the same type, exactly once.
	ending := &accounts.Ending{Accounts: h.Accounts, Catalog: h.Catalog, Grace: 15 * time.Minute}
	if n, err := ending.Once(ctx); err != nil || n != 0 {
		t.Fatalf("settled before the books closed: %d %v", n, err)
	}
	ending.Now = func() time.Time { return change.Add(15 * time.Minute) }
	prev, err := h.Catalog.Subscription(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		did, err := ending.Settle(ctx, prev)
		if err != nil || did != (i == 0) {
			t.Fatalf("settle %d: %v %v", i, did, err)
		}
	}
	for sub, want := range map[string]credit.Amount{old: 0, "sub-acme-2": credit.Credits(49 + 98)} {
		v, err := h.Balances.Balance(ctx, sub)
		if err != nil || v.Total != want {
			t.Errorf("after carry-over: balance of %s = %s (%v), want %s", sub, v.Total, err, want)
		}
		if sub != old && (len(v.Grants) != 2 || v.Grants[0].Type != credit.Promotional || v.Grants[1].Type != credit.Purchased) {
			t.Errorf("successor's grants %+v", v.Grants)
		}
	}
	var reason string
	var amt decimal.Decimal
	if err := h.Conn.QueryRow(ctx, "SELECT reason, amount FROM credit_ledger FINAL WHERE subscription_id = 'sub-acme-2' AND kind = 'grant' AND reason LIKE 'carried over from%'").Scan(&reason, &amt); err != nil || !amt.Equal(decimal.NewFromInt(98)) {
		t.Errorf("carried grant in the archive: %q %s %v", reason, amt, err)
	}
	if err := h.Conn.QueryRow(ctx, "SELECT reason, amount FROM credit_ledger FINAL WHERE subscription_id = ? AND kind = 'adjustment'", old).Scan(&reason, &amt); err != nil || !amt.Equal(decimal.NewFromInt(-98)) {
		t.Errorf("carried-out entry in the archive: %q %s %v", reason, amt, err)
	}
	// Redis and the archive agree after the moves.
	rep, err := reconcile.Run(ctx, h.Balances, h.Conn, reconcile.Options{Deep: true})
	if err != nil || len(rep.Drift) != 0 {
		t.Errorf("reconcile after the carry-over: %v, drift %+v", err, rep.Drift)
	}
	// The purchased credits were billed once, on the old subscription's
	// invoice; the successor's shows them carried over, not billed.
	period := change.UTC().Format("2006-01")
	terms := archive.InvoiceTerms{CustomerID: "acme", Currency: "USD", CreditValue: decimal.NewFromInt(1), CreditCurrency: "AIT"}
	for sub, due := range map[string]int64{old: 100, "sub-acme-2": 0} {
		inv, err := archive.BuildInvoice(ctx, h.Conn, sub, period, terms)
		if err != nil || !inv.TotalDue.Equal(decimal.NewFromInt(due)) {
			t.Errorf("invoice of %s: total due %s (%v), want %d: %+v", sub, inv.TotalDue, err, due, inv.Lines)
		}
	}
}
