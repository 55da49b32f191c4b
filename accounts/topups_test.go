package accounts_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/rating"
)

type pendingEvents struct{ statuses []string }

func (p *pendingEvents) ObservePending(t balance.PendingTopUp) {
	p.statuses = append(p.statuses, t.Status)
}

// The sweep expires unpaid top-ups once due, gives their share of the
// purchase limit back and leaves confirmed ones alone.
func TestPendingSweepExpiresUnpaidTopUps(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	st := apptest.StoresWith(t, app.Options{Balance: balance.Options{Now: func() time.Time { return time.UnixMilli(now.Load()) }}})
	acc := st.Accounts
	ev := &pendingEvents{}
	acc.Payments = ev
	ctx := context.Background()
	limit := credit.MustParse("1000")
	terms := rating.AccountTerms{SubscriptionID: "sub-pay", CustomerID: "c", Overage: credit.Unfunded, Currency: "USD",
		CreditValue: decimal.RequireFromString("0.04"), PurchaseLimit: &rating.PurchaseLimit{Credits: &limit}}
	if err := acc.OpenSubscription(ctx, terms, nil); err != nil {
		t.Fatal(err)
	}
	pend := func(key, amt string) balance.PendingTopUp {
		t.Helper()
		p, _, err := acc.CreatePending(ctx, balance.PendingRequest{Key: key, Subscription: "sub-pay", Amount: credit.MustParse(amt), TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	paid, unpaid := pend("a", "400"), pend("b", "600")
	if _, _, err := acc.ConfirmTopUp(ctx, "sub-pay", paid.ID); err != nil {
		t.Fatal(err)
	}
	sweep := &accounts.PendingSweep{Accounts: acc}
	if n, err := sweep.Once(ctx); err != nil || n != 0 {
		t.Fatalf("before expiry: %d, %v", n, err)
	}
	now.Add(time.Minute.Milliseconds())
	if n, err := sweep.Once(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d ended, %v", n, err)
	}
	if n, err := sweep.Once(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep: %d, %v", n, err)
	}
	if p, err := acc.PendingTopUp(ctx, "sub-pay", unpaid.ID); err != nil || p.Status != balance.TopUpExpired {
		t.Fatalf("unpaid: %+v %v", p, err)
	}
	if p, err := acc.PendingTopUp(ctx, "sub-pay", paid.ID); err != nil || p.Status != balance.TopUpConfirmed {
		t.Fatalf("paid: %+v %v", p, err)
	}
	pend("c", "600") // the expired one's 600 were given back
	want := []string{"pending", "pending", "confirmed", "expired", "pending"}
	if len(ev.statuses) != len(want) {
		t.Fatalf("events %v, want %v", ev.statuses, want)
	}
	for i := range want {
		if ev.statuses[i] != want[i] {
			t.Fatalf("events %v, want %v", ev.statuses, want)
		}
	}
}
