package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/reconcile"
)

// A UNIQUE_COUNT value counted, archived and committed, then lost by Redis
// (restarted from an older copy) with the charge: the engine repairs the
// subscription from the archive, and the value's next appearance in the
// period is not charged again. A value first counted on the lost state
// (after the copy, before the repair noticed) counts once as well.
func TestUniqueCountSurvivesLostWrites(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := e2e.NewOn(t, 2, e2e.Private(srv.Addr, srv.Client()))
	ctx := context.Background()
	f := rating.Feature{ID: "active-users", Name: "Active users", Meter: rating.Meter{Kind: rating.MeterEventBased, EventName: "login",
		Aggregation: rating.AggUniqueCount, Dimension: "user"}}
	if _, err := h.Catalog.CreateFeature(ctx, &f); err != nil {
		t.Fatal(err)
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
	at := s.StartAt.Add(100 * time.Millisecond)
	n := 0
	login := func(id, user string) kafka.Message {
		n++
		ev := rating.Event{ID: id, CustomerID: "acme", Name: "login", Timestamp: at.Add(time.Duration(n) * time.Millisecond),
			Dims: []rating.Dim{{Key: "user", Str: user}}}
		return kafka.Message{Key: []byte("acme"), Value: ingest.AppendJSON(nil, &ev)}
	}
	time.Sleep(time.Until(at.Add(time.Second)))

	e, m, src := h.NewEngine("engine-unique", engine.Config{
		Repair:        &reconcile.Repairer{Store: h.Balances, Conn: h.Conn},
		RedisIdentity: h.Balances.Identity,
		RetryMax:      500 * time.Millisecond,
	})
	defer src.Close()
	stop := run(t, e)
	defer stop()
	balance := func(want credit.Amount, why string) {
		t.Helper()
		v, err := h.Balances.Balance(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		if v.Total != want {
			t.Errorf("%s: balance %s, want %s", why, v.Total, want)
		}
	}

	h.Produce([]kafka.Message{login("a1", "ann")})
	e2e.WaitConsumed(t, m, 1, time.Minute)
	h.WaitGroupDone("engine-unique", time.Minute)
	copied := srv.Copy() // Redis as it will come back: ann counted

	h.Produce([]kafka.Message{login("b1", "bob"), login("c1", "cat")})
	e2e.WaitConsumed(t, m, 3, time.Minute)
	h.WaitGroupDone("engine-unique", time.Minute)
	balance(credit.Credits(1000-3*2), "ann, bob and cat")
	srv.RestartFrom(copied) // bob and cat's charges and set entries are gone

	h.Produce([]kafka.Message{login("b2", "bob"), login("a2", "ann"), login("d1", "dan")})
	h.WaitGroupDone("engine-unique", 2*time.Minute)
	if testutil.ToFloat64(m.Repairs) == 0 {
		t.Fatal("no subscription repaired after Redis lost writes")
	}
	balance(credit.Credits(1000-4*2), "after the repair: bob, ann again, then dan")
	h.Produce([]kafka.Message{login("c2", "cat"), login("d2", "dan")})
	h.WaitGroupDone("engine-unique", time.Minute)
	balance(credit.Credits(1000-4*2), "cat and dan again")

	var rows, counted uint64
	if err := h.Conn.QueryRow(ctx, "SELECT count(), countIf(credits_micro > 0) FROM rated_usage FINAL WHERE subscription_id = ?", sub).Scan(&rows, &counted); err != nil {
		t.Fatal(err)
	}
	if rows != 8 || counted != 4 {
		t.Errorf("rated_usage: %d rows, %d charged; want 8, 4", rows, counted)
	}
}
