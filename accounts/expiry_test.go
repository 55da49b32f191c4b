package accounts_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/lease"
)

// An idle subscription's promotional grant expires on 20 October: two
// sweepers, each under the lease, write its breakage once within a minute
// of expiry + grace, archive it in ClickHouse once, and the October invoice
// shows it. A subscription whose grant expires later is not touched.
func TestExpirySweepIdleSubscription(t *testing.T) {
	ctx := t.Context()
	const grace = 15 * time.Minute
	var clock atomic.Int64
	set := func(t time.Time) { clock.Store(t.UnixMilli()) }
	now := func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	set(time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC))
	st := apptest.StoresWith(t, app.Options{Balance: balance.Options{GraceWindow: grace, Now: now}})
	rc, pfx, conn, cat, bal, acc := st.RC, st.Prefix, st.Conn, st.Catalog, st.Balances, st.Accounts
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	idle, err := seed.Subscribe(ctx, cat, acc, seed.Subscription{Customer: "idle", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := seed.Subscribe(ctx, cat, acc, seed.Subscription{Customer: "other", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Date(2026, 10, 20, 12, 0, 0, 0, time.UTC)
	promo := func(sub, customer string, exp time.Time) {
		t.Helper()
		r, err := bal.Grant(ctx, balance.GrantRequest{Key: "promo", Subscription: sub, Type: balance.Promotional, Amount: credit.Credits(40),
			EffectiveAt: now(), ExpiresAt: exp, Reason: "autumn promotion"})
		if err != nil {
			t.Fatal(err)
		}
		if err := acc.Export(ctx, sub, customer, r.Seq, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	promo(idle, "idle", expires)
	promo(other, "other", expires.AddDate(0, 1, 0))

	list := func(ctx context.Context) ([]accounts.SubscriptionRef, error) {
		subs, err := cat.Subscriptions(ctx)
		var out []accounts.SubscriptionRef
		for _, s := range subs {
			out = append(out, accounts.SubscriptionRef{ID: s.ID, Customer: s.CustomerID})
		}
		return out, err
	}
	// Just before expiry + grace: nothing due.
	set(expires.Add(grace - time.Second))
	sw := &accounts.ExpirySweep{Accounts: acc, List: list}
	if r, err := sw.Once(ctx); err != nil || r.Checked != 2 || r.Due != 0 || r.Expired != 0 {
		t.Fatalf("before grace ended: %+v %v", r, err)
	}

	// Half a minute after expiry + grace, two nodes sweep under one lease.
	set(expires.Add(grace + 30*time.Second))
	var wg sync.WaitGroup
	var sweeps atomic.Int32
	sctx, stop := context.WithCancel(ctx)
	for range 2 {
		l, err := lease.New(rc, pfx, "expiry-sweep", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sw := &accounts.ExpirySweep{Accounts: acc, List: list}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Run(sctx, func(ctx context.Context) {
				sweeps.Add(1)
				sw.Run(ctx, 20*time.Millisecond)
			}, nil)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := bal.Balance(ctx, idle)
		if err != nil {
			t.Fatal(err)
		}
		if v.Total == credit.Credits(100) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breakage not written by the sweep: total %s, want 100", v.Total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Stopping cancels an archive insert in flight (inserts take hundreds
	// of ms on a loaded ClickHouse): wait for the breakage to be archived.
	for {
		var n uint64
		if err := conn.QueryRow(ctx, `SELECT count() FROM credit_ledger WHERE subscription_id = ? AND kind = 'expiry'`, idle).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("breakage not archived by the sweep")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let both nodes sweep again
	stop()
	wg.Wait()
	if n := sweeps.Load(); n != 1 {
		t.Errorf("the sweep job started %d times, want once (one lease holder)", n)
	}

	var rows uint64
	var amt decimal.Decimal
	var at time.Time
	if err := conn.QueryRow(ctx, `SELECT count(), sum(amount), max(created_at) FROM credit_ledger WHERE subscription_id = ? AND kind = 'expiry'`,
		idle).Scan(&rows, &amt, &at); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || !amt.Equal(decimal.NewFromInt(-40)) || at.Before(expires.Add(grace)) || at.After(expires.Add(grace+time.Minute)) {
		t.Fatalf("archived breakage: %d rows, %s credits at %s; want one row of -40 within a minute of %s", rows, amt, at, expires.Add(grace))
	}
	if err := conn.QueryRow(ctx, `SELECT count() FROM credit_ledger WHERE subscription_id = ? AND kind = 'expiry'`, other).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("other subscription: %d breakage rows, %v", rows, err)
	}
	terms := archive.InvoiceTerms{CustomerID: "idle", Currency: "USD", CreditValue: decimal.RequireFromString("0.04"), CreditCurrency: "AIT"}
	oct, err := archive.BuildInvoice(ctx, conn, idle, "2026-10", terms)
	if err != nil {
		t.Fatal(err)
	}
	if !oct.BreakageCredits.Equal(decimal.NewFromInt(40)) || !oct.ClosingBalance.Equal(decimal.NewFromInt(100)) {
		t.Fatalf("October invoice: breakage %s, closing %s; want 40, 100", oct.BreakageCredits, oct.ClosingBalance)
	}
}

// flakyArchive fails WriteLedger while down and records what it took.
type flakyArchive struct {
	mu   sync.Mutex
	down bool
	rows []archive.LedgerRow
}

func (f *flakyArchive) WriteUsage(context.Context, []archive.RatedRow) error { return nil }
func (f *flakyArchive) WriteLedger(_ context.Context, rows []archive.LedgerRow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return balance.ErrUnavailable
	}
	f.rows = append(f.rows, rows...)
	return nil
}

// Breakage written while the archive is down is archived by the next sweep,
// although the subscription is no longer due.
func TestExpirySweepRetriesArchive(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := t.Context()
	var clock atomic.Int64
	t0 := time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixMilli())
	bal, err := balance.New(rc, balance.Options{Prefix: pfx, Now: func() time.Time { return time.UnixMilli(clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	arch := &flakyArchive{down: true}
	acc := &accounts.Accounts{Store: bal, Archive: arch}
	sub := "sweep-" + testenv.RandomID(t)
	if _, err := bal.OpenAccount(ctx, balance.AccountSpec{Subscription: sub, Customer: "c", Policy: balance.Unfunded, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bal.Grant(ctx, balance.GrantRequest{Key: "p", Subscription: sub, Type: balance.Promotional, Amount: credit.Credits(7),
		EffectiveAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clock.Store(t0.Add(time.Hour).UnixMilli())
	sw := &accounts.ExpirySweep{Accounts: acc, List: func(context.Context) ([]accounts.SubscriptionRef, error) {
		return []accounts.SubscriptionRef{{ID: sub, Customer: "c"}}, nil
	}}
	if r, err := sw.Once(ctx); err == nil || r.Expired != 1 {
		t.Fatalf("archive down: %+v %v, want the breakage written and an error", r, err)
	}
	arch.mu.Lock()
	arch.down = false
	arch.mu.Unlock()
	if r, err := sw.Once(ctx); err != nil || r.Due != 0 {
		t.Fatalf("retry: %+v %v", r, err)
	}
	if len(arch.rows) != 1 || arch.rows[0].Kind != "expiry" || arch.rows[0].Amount != -credit.Credits(7) || arch.rows[0].Seq != 2 || arch.rows[0].CustomerID != "c" {
		t.Fatalf("archived %+v", arch.rows)
	}
}

// A top-up or adjustment on a subscription with a grant past expiry + grace
// writes the breakage first (its script sweeps): that entry is archived with
// the change, not only the change's own entry.
func TestChangeArchivesItsBreakage(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := t.Context()
	var clock atomic.Int64
	t0 := time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixMilli())
	bal, err := balance.New(rc, balance.Options{Prefix: pfx, Now: func() time.Time { return time.UnixMilli(clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	arch := &flakyArchive{}
	acc := &accounts.Accounts{Store: bal, Archive: arch}
	sub := "change-" + testenv.RandomID(t)
	if _, err := bal.OpenAccount(ctx, balance.AccountSpec{Subscription: sub, Customer: "c", Policy: balance.Unfunded, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	for i, exp := range []time.Duration{time.Hour, 2 * time.Hour, 5 * time.Hour} {
		if _, err := bal.Grant(ctx, balance.GrantRequest{Key: fmt.Sprint("p", i), Subscription: sub, Type: balance.Promotional,
			Amount: credit.Credits(int64(i + 1)), EffectiveAt: t0, ExpiresAt: t0.Add(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Store(t0.Add(3 * time.Hour).UnixMilli()) // the first two expired
	if _, err := acc.TopUp(ctx, balance.TopUpRequest{Key: "t", Subscription: sub, Amount: credit.Credits(5)}, "c"); err != nil {
		t.Fatal(err)
	}
	clock.Store(t0.Add(6 * time.Hour).UnixMilli()) // the third
	if _, err := acc.Adjust(ctx, balance.AdjustRequest{Key: "a", Subscription: sub, Amount: -credit.Credits(1), Reason: "r", Actor: "x"}, "c"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range arch.rows {
		got = append(got, fmt.Sprint(r.Seq, r.Kind, r.Amount))
	}
	want := []string{"4expiry-1", "5expiry-2", "6topup5", "7expiry-3", "8adjustment-1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("archived %v, want %v", got, want)
	}
}
