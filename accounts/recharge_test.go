package accounts_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
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
	"github.com/creditmeter/creditmeter/internal/app"
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

// On a plan that requires payment confirmation a crossing creates one
// pending top-up (not credits), exactly once across two rechargers; it
// becomes credits only when confirmed; an expiry or a decline is recorded
// as a failure and retried after the backoff with a new pending top-up;
// a crossing after a confirmed one creates the next.
func TestAutoRechargePendingOnConfirmationPlans(t *testing.T) {
	var nowMs atomic.Int64
	nowMs.Store(time.Now().UnixMilli())
	now := func() time.Time { return time.UnixMilli(nowMs.Load()) }
	advance := func(d time.Duration) { nowMs.Add(d.Milliseconds()) }
	st := apptest.StoresWith(t, app.Options{Balance: balance.Options{Now: now}})
	acc := st.Accounts
	ev := &pendingEvents{}
	acc.Payments = ev
	ctx := t.Context()
	sub := "sub-arp"
	openRecharging(t, acc, sub)
	list := func(context.Context) ([]accounts.SubscriptionRef, error) {
		return []accounts.SubscriptionRef{{ID: sub, Customer: "cust-" + sub}}, nil
	}
	terms := func(context.Context, accounts.SubscriptionRef) (*rating.PaymentTerms, error) {
		return &rating.PaymentTerms{ConfirmationRequired: true, ExpiresIn: "10m"}, nil
	}
	var mu sync.Mutex
	var events []balance.RechargeState
	notify := func(_ string, s balance.RechargeState, _ credit.Amount) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	backoff := []time.Duration{time.Minute, 5 * time.Minute}
	var paid atomic.Int64
	pay := func(context.Context, string, string, credit.Amount) error { paid.Add(1); return nil }
	mk := func() *accounts.Recharger {
		return &accounts.Recharger{Accounts: acc, List: list, Payment: terms, Pay: pay, Notify: notify, Backoff: backoff, Now: now}
	}
	r1, r2 := mk(), mk()
	race := func() {
		t.Helper()
		var wg sync.WaitGroup
		for i := 0; i < 5; i++ {
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
	state := func(wantStatus string, wantAttempts int) balance.RechargeState {
		t.Helper()
		s, ok, err := acc.Store.RechargeState(ctx, sub)
		if err != nil || !ok || s.Status != wantStatus || s.Attempts != wantAttempts {
			t.Fatalf("recharge state %+v (%v, %v); want %s after %d attempts", s, ok, err, wantStatus, wantAttempts)
		}
		return s
	}
	total := func(want string) {
		t.Helper()
		if v, err := acc.Balance(ctx, sub); err != nil || v.Total != credit.MustParse(want) {
			t.Fatalf("balance %s (%v), want %s", v.Total, err, want)
		}
	}
	pending := func(s balance.RechargeState, key string) balance.PendingTopUp {
		t.Helper()
		if want := balance.PendingID(sub, key); s.TopUpID != want {
			t.Fatalf("recharge state names top-up %q, want %q (key %s)", s.TopUpID, want, key)
		}
		p, err := acc.PendingTopUp(ctx, sub, s.TopUpID)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	spend(t, acc, sub, "u1", "60") // 40 < 50: crossing at the grant of seq 1
	race()
	total("40") // pending: no credits yet
	s := state("pending", 1)
	p := pending(s, "auto-recharge:1")
	if p.Status != balance.TopUpPending || p.Amount != credit.MustParse("300") || p.Charge.String() != "12" || paid.Load() != 0 {
		t.Fatalf("pending top-up %+v, %d payments taken at once", p, paid.Load())
	}
	if len(ev.statuses) != 1 || ev.statuses[0] != balance.TopUpPending {
		t.Fatalf("pending top-up events %v, want one pending", ev.statuses)
	}
	race() // in flight: nothing new
	if len(ev.statuses) != 1 {
		t.Fatalf("a second top-up for one crossing: %v", ev.statuses)
	}
	if _, _, err := acc.ConfirmTopUp(ctx, sub, p.ID); err != nil {
		t.Fatal(err)
	}
	total("340")
	race()
	s = state("done", 1)
	if s.TopUpSeq == 0 || len(events) != 1 || events[0].Status != "done" {
		t.Fatalf("after the confirmation: state %+v, events %+v", s, events)
	}
	if k := topUps(t, acc, sub); len(k) != 1 || k[0] != "pending:"+p.ID {
		t.Fatalf("top-ups %v", k)
	}

	// the next crossing: expired, then declined, then confirmed
	spend(t, acc, sub, "u2", "300") // 40
	race()
	s = state("pending", 1)
	cross := s.Crossing
	p2 := pending(s, "auto-recharge:"+strconv.FormatInt(cross, 10))
	if p2.ID == p.ID {
		t.Fatal("the second crossing reused the first's top-up")
	}
	advance(10 * time.Minute)
	race()
	s = state("failed", 1)
	if s.Crossing != cross || s.LastError == "" || !s.NextAttempt.Equal(now().Add(time.Minute)) || len(events) != 2 || events[1].Status != "failed" {
		t.Fatalf("after the expiry: state %+v, events %+v", s, events)
	}
	if q, _ := acc.PendingTopUp(ctx, sub, p2.ID); q.Status != balance.TopUpExpired {
		t.Fatalf("expired top-up %+v", q)
	}
	race() // within the backoff
	state("failed", 1)
	advance(time.Minute)
	race()
	s = state("pending", 2)
	p3 := pending(s, "auto-recharge:"+strconv.FormatInt(cross, 10)+"#2")
	if _, err := acc.FailTopUp(ctx, sub, p3.ID, "card declined"); err != nil {
		t.Fatal(err)
	}
	race()
	s = state("failed", 2)
	if !strings.Contains(s.LastError, "card declined") || !s.NextAttempt.Equal(now().Add(5*time.Minute)) {
		t.Fatalf("after the decline: %+v", s)
	}
	advance(5 * time.Minute)
	race()
	s = state("pending", 3)
	p4 := pending(s, "auto-recharge:"+strconv.FormatInt(cross, 10)+"#3")
	if _, _, err := acc.ConfirmTopUp(ctx, sub, p4.ID); err != nil {
		t.Fatal(err)
	}
	race()
	state("done", 3)
	total("340")
	if k := topUps(t, acc, sub); len(k) != 2 || k[1] != "pending:"+p4.ID {
		t.Fatalf("top-ups %v", k)
	}
	if len(events) != 4 || events[3].Status != "done" || paid.Load() != 0 {
		t.Fatalf("events %+v, payments %d", events, paid.Load())
	}
}

// A pending top-up made before a crash, with the auto-recharge's amount
// changed before the retry, stays the crossing's one top-up in flight.
func TestAutoRechargePendingAmountChangedAfterCrash(t *testing.T) {
	st := apptest.Stores(t)
	acc := st.Accounts
	ctx := t.Context()
	sub := "sub-arc"
	openRecharging(t, acc, sub)
	spend(t, acc, sub, "u1", "60")
	// the crashed pass: its pending top-up made, its state never written
	first, _, err := acc.CreatePending(ctx, balance.PendingRequest{Key: "auto-recharge:1", Subscription: sub, Amount: credit.MustParse("300"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.SetAutoRecharge(ctx, sub, &balance.AutoRecharge{Enabled: true, Threshold: credit.MustParse("50"), Amount: credit.MustParse("400")}); err != nil {
		t.Fatal(err)
	}
	r := &accounts.Recharger{Accounts: acc, Backoff: []time.Duration{time.Nanosecond},
		List: func(context.Context) ([]accounts.SubscriptionRef, error) {
			return []accounts.SubscriptionRef{{ID: sub, Customer: "cust-" + sub}}, nil
		},
		Payment: func(context.Context, accounts.SubscriptionRef) (*rating.PaymentTerms, error) {
			return &rating.PaymentTerms{ConfirmationRequired: true}, nil
		}}
	for range 3 {
		if _, err := r.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s, _, _ := acc.Store.RechargeState(ctx, sub)
	n, _ := st.RC.HLen(ctx, st.Prefix+"{"+sub+"}:tp").Result()
	if s.Status != "pending" || s.TopUpID != first.ID || n != 1 {
		t.Fatalf("state %+v, %d pending top-ups; want the first one only (%s)", s, n, first.ID)
	}
}
