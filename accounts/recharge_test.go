package accounts_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/rating"
)

func openRecharging(t *testing.T, acc *accounts.Accounts, sub string) {
	t.Helper()
	mn, mx := credit.MustParse("250"), credit.MustParse("8000")
	terms := rating.AccountTerms{SubscriptionID: sub, CustomerID: "cust-" + sub, Overage: credit.Unfunded, Currency: "USD",
		CreditValue: decimal.RequireFromString("0.04"), MinPurchase: &mn, MaxPurchase: &mx,
		AutoRecharge: &rating.AutoRecharge{Threshold: credit.MustParse("50"), Amount: credit.MustParse("300")}}
	g := &rating.Grant{SubscriptionID: sub, Type: rating.GrantPromotional, Amount: credit.MustParse("100"), EffectiveAt: time.Now().Add(-time.Minute)}
	if err := acc.OpenSubscription(context.Background(), terms, g); err != nil {
		t.Fatal(err)
	}
}

func spend(t *testing.T, acc *accounts.Accounts, sub, key, amt string) {
	t.Helper()
	if _, err := acc.Adjust(context.Background(), balance.AdjustRequest{Key: key, Subscription: sub, Amount: -credit.MustParse(amt), Reason: "usage", Actor: "test"}, "cust-"+sub); err != nil {
		t.Fatal(err)
	}
}

func topUps(t *testing.T, acc *accounts.Accounts, sub string) (keys []string) {
	t.Helper()
	es, err := acc.Ledger(context.Background(), sub, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Kind == "topup" {
			keys = append(keys, e.Fields["key"])
			if e.Fields["charge"] != "12" {
				t.Errorf("auto-recharge charge %s, want 12", e.Fields["charge"])
			}
		}
	}
	return keys
}

// Two rechargers on one Redis prefix, each checking ten times at once, buy
// exactly one top-up per crossing; a recharger killed after the payment
// and before the top-up is completed by another, still once.
func TestAutoRechargeExactlyOncePerCrossing(t *testing.T) {
	st := apptest.Stores(t)
	acc := st.Accounts
	ctx := t.Context()
	sub := "sub-ar"
	openRecharging(t, acc, sub)
	list := func(context.Context) ([]accounts.SubscriptionRef, error) {
		return []accounts.SubscriptionRef{{ID: sub, Customer: "cust-" + sub}}, nil
	}
	var paid atomic.Int64
	pay := func(context.Context, string, string, credit.Amount) error { paid.Add(1); return nil }
	r1 := &accounts.Recharger{Accounts: acc, List: list, Pay: pay}
	r2 := &accounts.Recharger{Accounts: acc, List: list, Pay: pay}
	race := func() {
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			for _, r := range []*accounts.Recharger{r1, r2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := r.Once(ctx); err != nil {
						t.Error(err)
					}
				}()
			}
		}
		wg.Wait()
	}
	race()
	if k := topUps(t, acc, sub); len(k) != 0 {
		t.Fatalf("recharged above the threshold: %v", k)
	}
	spend(t, acc, sub, "u1", "60") // 40 < 50: a crossing
	race()
	if k := topUps(t, acc, sub); len(k) != 1 || k[0] != "auto-recharge:1" {
		t.Fatalf("first crossing: top-ups %v", k)
	}
	if v, _ := acc.Balance(ctx, sub); v.Total != credit.MustParse("340") {
		t.Fatalf("balance %s", v.Total)
	}
	race()
	spend(t, acc, sub, "u2", "300") // 40 again: a second crossing
	race()
	if k := topUps(t, acc, sub); len(k) != 2 {
		t.Fatalf("second crossing: top-ups %v", k)
	}

	// killed between the payment and the top-up
	spend(t, acc, sub, "u3", "300")
	kctx, kill := context.WithCancel(ctx)
	var killedKey string
	dying := &accounts.Recharger{Accounts: acc, List: list, Pay: func(_ context.Context, _, key string, _ credit.Amount) error {
		killedKey = key
		kill()
		return nil
	}}
	if _, err := dying.Once(kctx); err == nil {
		t.Fatal("the killed recharger reported success")
	}
	if k := topUps(t, acc, sub); len(k) != 2 {
		t.Fatalf("top-ups after the kill: %v", k)
	}
	var again string
	fresh := &accounts.Recharger{Accounts: acc, List: list, Pay: func(_ context.Context, _, key string, _ credit.Amount) error { again = key; return nil }}
	if _, err := fresh.Once(ctx); err != nil {
		t.Fatal(err)
	}
	race()
	if k := topUps(t, acc, sub); len(k) != 3 || k[2] != killedKey || again != killedKey {
		t.Fatalf("after the restart: top-ups %v, paid keys %q %q", k, killedKey, again)
	}
}

// A declined payment is recorded (state, metric, event) and retried after
// the backoff, then the crossing's one top-up is made.
func TestAutoRechargeDeclinedRetriedWithBackoff(t *testing.T) {
	st := apptest.Stores(t)
	acc := st.Accounts
	ctx := t.Context()
	sub := "sub-declined"
	openRecharging(t, acc, sub)
	spend(t, acc, sub, "u1", "60")
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var attempts atomic.Int64
	var events []balance.RechargeState
	m := accounts.NewRechargeMetrics(prometheus.NewRegistry())
	r := &accounts.Recharger{Accounts: acc, Metrics: m, Now: func() time.Time { return now }, Backoff: []time.Duration{time.Minute, 5 * time.Minute},
		List: func(context.Context) ([]accounts.SubscriptionRef, error) {
			return []accounts.SubscriptionRef{{ID: sub, Customer: "cust-" + sub}}, nil
		},
		Pay: func(context.Context, string, string, credit.Amount) error {
			if attempts.Add(1) <= 2 {
				return errors.New("card declined")
			}
			return nil
		},
		Notify: func(_ string, s balance.RechargeState, _ credit.Amount) { events = append(events, s) }}
	step := func(wantAttempts int64, wantStatus string) balance.RechargeState {
		t.Helper()
		if _, err := r.Once(ctx); err != nil {
			t.Fatal(err)
		}
		s, ok, err := acc.Store.RechargeState(ctx, sub)
		if err != nil || !ok || attempts.Load() != wantAttempts || s.Status != wantStatus {
			t.Fatalf("state %+v (%v %v), %d payment attempts; want %d, %s", s, ok, err, attempts.Load(), wantAttempts, wantStatus)
		}
		return s
	}
	s := step(1, "failed")
	if s.LastError != "payment: card declined" || !s.NextAttempt.Equal(now.Add(time.Minute)) || testutil.ToFloat64(m.Failing) != 1 {
		t.Fatalf("failure: %+v", s)
	}
	step(1, "failed") // within the backoff: no attempt
	now = now.Add(time.Minute)
	if s = step(2, "failed"); !s.NextAttempt.Equal(now.Add(5 * time.Minute)) {
		t.Fatalf("second backoff: %+v", s)
	}
	now = now.Add(5 * time.Minute)
	step(3, "done")
	step(3, "done")
	if k := topUps(t, acc, sub); len(k) != 1 {
		t.Fatalf("top-ups %v", k)
	}
	if f, made := testutil.ToFloat64(m.Recharges.WithLabelValues("failed")), testutil.ToFloat64(m.Recharges.WithLabelValues("made")); f != 2 || made != 1 || testutil.ToFloat64(m.Failing) != 0 {
		t.Fatalf("metrics: failed %v made %v", f, made)
	}
	if len(events) != 3 || events[2].Status != "done" {
		t.Fatalf("events %+v", events)
	}
}
