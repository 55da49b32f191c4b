package accounts_test

import (
	"context"
	"errors"
	"strings"
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
	"github.com/creditmeter/creditmeter/rating"
)

// Issue 17 item 1: a plan whose on_end expires remaining credits and
// refunds purchased ones. A cancelled subscription's 100 purchased credits
// (bought at 0.04 USD) are debited once its books close, in one ledger
// entry recording the refund of 4 USD, which the invoice credits; settling
// again changes nothing.
func TestEndExpiresAndRefundsPurchased(t *testing.T) {
	st := apptest.Stores(t)
	ctx := context.Background()
	if err := seed.Catalog(ctx, st.Catalog); err != nil {
		t.Fatal(err)
	}
	p, err := st.Catalog.Plan(ctx, seed.PlanUnfunded)
	if err != nil {
		t.Fatal(err)
	}
	p.ID = "refunding"
	p.Prepaid.OnEnd = &rating.EndPolicy{Remaining: rating.Expire, RefundPurchased: true}
	if _, err := st.Catalog.CreatePlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	sub, err := seed.Subscribe(ctx, st.Catalog, st.Accounts, seed.Subscription{Customer: "acme", Plan: "refunding", Included: "100", GrantType: "purchased", CreditValue: "0.04"})
	if err != nil {
		t.Fatal(err)
	}
	ended, err := st.Catalog.CancelSubscription(ctx, sub, time.Time{})
	if err != nil || ended.Status != rating.StatusEnded {
		t.Fatalf("cancel: %+v %v", ended, err)
	}
	grace := 15 * time.Minute
	e := &accounts.Ending{Accounts: st.Accounts, Catalog: st.Catalog, Grace: grace}
	if n, err := e.Once(ctx); err != nil || n != 0 {
		t.Fatalf("settled before the books closed: %d %v", n, err)
	}
	e.Now = func() time.Time { return ended.EndAt.Add(grace) }
	for i := 0; i < 2; i++ {
		if n, err := e.Once(ctx); err != nil || n != 1-i {
			t.Fatalf("settle %d: %d %v", i, n, err)
		}
	}
	v, err := st.Accounts.Balance(ctx, sub)
	if err != nil || v.Total != 0 {
		t.Fatalf("balance after the end: %s %v", v.Total, err)
	}
	es, err := st.Accounts.Ledger(ctx, sub, 1, 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("ledger %+v %v", es, err)
	}
	last := es[1]
	if last.Kind != "adjustment" || last.Amount != -credit.Credits(100) || last.Fields["charge"] != "-4" || last.Fields["currency"] != "USD" ||
		last.Fields["actor"] != "system" || !strings.Contains(last.Fields["reason"], "refunded") {
		t.Fatalf("end entry %+v", last)
	}
	inv, err := archive.BuildInvoice(ctx, st.Conn, sub, ended.EndAt.UTC().Format("2006-01"), archive.InvoiceTerms{CustomerID: "acme", Currency: "USD",
		CreditValue: decimal.RequireFromString("0.04"), CreditCurrency: "AIT"})
	if err != nil || !inv.TotalDue.IsZero() || !inv.ClosingBalance.IsZero() {
		t.Fatalf("invoice: due %s closing %s %v: %+v", inv.TotalDue, inv.ClosingBalance, err, inv.Lines)
	}
}

// A plan change whose successor has room for fewer grants than the old
// subscription carries (the successor was topped up during the grace
// window) still settles: carried grants pass the cap, so nothing is left
// on the ended subscription and nothing is carried twice.
func TestCarryOverBeyondTheGrantCap(t *testing.T) {
	st := apptest.StoresWith(t, app.Options{Balance: balance.Options{MaxGrants: 3}})
	ctx := context.Background()
	if err := seed.Catalog(ctx, st.Catalog); err != nil {
		t.Fatal(err)
	}
	old, err := seed.Subscribe(ctx, st.Catalog, st.Accounts, seed.Subscription{Customer: "acme", Plan: seed.PlanUnfunded, Included: "10", GrantType: "purchased"})
	if err != nil {
		t.Fatal(err)
	}
	adjust := func(sub, key string, n int64) {
		t.Helper()
		if _, err := st.Accounts.Adjust(ctx, balance.AdjustRequest{Key: key, Subscription: sub, Amount: credit.Credits(n), Reason: "r", Actor: "a"}, "acme"); err != nil {
			t.Fatalf("adjust %s %s: %v", sub, key, err)
		}
	}
	adjust(old, "o1", 1)
	adjust(old, "o2", 2) // 3 grants: the cap
	ch, err := st.Catalog.ChangePlan(ctx, old, &rating.Subscription{ID: "sub-acme-2", PlanID: seed.PlanUnfunded}, time.Time{}, "change-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Accounts.OpenSubscription(ctx, rating.Terms(ch.Subscription, ch.Plan), nil); err != nil {
		t.Fatal(err)
	}
	adjust("sub-acme-2", "n1", 5)
	adjust("sub-acme-2", "n2", 6)
	grace := 15 * time.Minute
	e := &accounts.Ending{Accounts: st.Accounts, Catalog: st.Catalog, Grace: grace, Now: func() time.Time { return ch.Previous.EndAt.Add(grace) }}
	for i := 0; i < 2; i++ {
		if n, err := e.Once(ctx); err != nil || n != 1-i {
			t.Fatalf("settle %d: %d %v", i, n, err)
		}
	}
	for sub, want := range map[string]credit.Amount{old: 0, "sub-acme-2": credit.Credits(10 + 1 + 2 + 5 + 6)} {
		if v, err := st.Accounts.Balance(ctx, sub); err != nil || v.Total != want {
			t.Errorf("after the carry-over: %s has %s (%v), want %s", sub, v.Total, err, want)
		}
	}
	// the cap still holds for the successor's own new grants
	if _, err := st.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "n3", Subscription: "sub-acme-2", Amount: 1, Reason: "r", Actor: "a"}, "acme"); !errors.Is(err, balance.ErrTooManyGrants) {
		t.Errorf("a new grant on the successor beyond the cap: %v", err)
	}
}
