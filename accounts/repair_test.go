package accounts_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
)

// A top-up made on a Redis that lost an acknowledged top-up reuses its
// ledger seq: the archive refuses it, the API's write path repairs the
// subscription from the archive and answers "retryable"; the retry with the
// same key applies it anew, the lost top-up's retry is a replay, and the
// archive's first entries never change.
func TestTopUpOnLostWritesIsRepairedAndRetried(t *testing.T) {
	ctx := context.Background()
	st := apptest.StoresWith(t, app.Options{Repair: true})
	rc, prefix, conn, store, a := st.RC, st.Prefix, st.Conn, st.Balances, st.Accounts
	terms := rating.AccountTerms{SubscriptionID: "sub-1", CustomerID: "c1", Overage: rating.OverageUnfunded, Currency: "USD", CreditValue: decimal.RequireFromString("0.04")}
	if err := a.OpenSubscription(ctx, terms, &rating.Grant{Type: rating.GrantPromotional, Amount: credit.Credits(100)}); err != nil {
		t.Fatal(err)
	}
	// Redis as it will come back: before the first top-up.
	keys, err := testenv.Keys(ctx, rc, prefix+"{sub-1}*")
	if err != nil {
		t.Fatal(err)
	}
	dumps := map[string]string{}
	for _, k := range keys {
		dumps[k] = rc.Dump(ctx, k).Val()
	}
	first, err := a.TopUp(ctx, balance.TopUpRequest{Key: "k1", Subscription: "sub-1", Amount: credit.Credits(20)}, "c1")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		rc.Del(ctx, k)
		if err := rc.Restore(ctx, k, 0, dumps[k]).Err(); err != nil {
			t.Fatal(err)
		}
	}

	_, err = a.TopUp(ctx, balance.TopUpRequest{Key: "k2", Subscription: "sub-1", Amount: credit.Credits(5)}, "c1")
	var undone *accounts.UndoneError
	if !errors.As(err, &undone) || !balance.Retryable(err) {
		t.Fatalf("top-up on a Redis that lost writes: %v, want an UndoneError that is retryable", err)
	}
	if v, _ := store.Balance(ctx, "sub-1"); v.Total != credit.Credits(120) {
		t.Fatalf("after the repair the balance is %s, want 120 (the archive's)", v.Total)
	}
	again, err := a.TopUp(ctx, balance.TopUpRequest{Key: "k2", Subscription: "sub-1", Amount: credit.Credits(5)}, "c1")
	if err != nil || again.Replayed || again.Seq != first.Seq+1 {
		t.Fatalf("retried top-up: %+v, %v; want it applied anew after seq %d", again, err, first.Seq)
	}
	replay, err := a.TopUp(ctx, balance.TopUpRequest{Key: "k1", Subscription: "sub-1", Amount: credit.Credits(20)}, "c1")
	if err != nil || !replay.Replayed || replay.Seq != first.Seq {
		t.Fatalf("the lost top-up retried: %+v, %v; want the first result replayed", replay, err)
	}
	var n, sum uint64
	var total decimal.Decimal
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(seq), sum(amount) FROM credit_ledger WHERE subscription_id = 'sub-1'").Scan(&n, &sum, &total); err != nil {
		t.Fatal(err)
	}
	if v, _ := store.Balance(ctx, "sub-1"); n != sum || !total.Equal(v.Total.Decimal()) || v.Total != credit.Credits(125) {
		t.Fatalf("archive: %d rows, %d seqs, sum %s; Redis balance %s, want 125 and one row per seq", n, sum, total, v.Total)
	}
}
