package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/reconcile"
)

// The archive's view of a balance (what a restore would write) equals what
// Redis holds: per-grant remainders, total, cumulative unfunded, and the last
// offset per partition.
func TestArchiveStateMatchesRedis(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	stores := apptest.StoresWith(t, app.Options{Balance: balance.Options{Now: func() time.Time { return now }}})
	rc, prefix, conn, store := stores.RC, stores.Prefix, stores.Conn, stores.Balances
	const sub = "st"
	spec := balance.AccountSpec{Subscription: sub, Customer: "c", Policy: balance.Unfunded, Currency: "USD", CreditValue: decimal.NewFromInt(1)}
	if _, err := store.OpenAccount(ctx, spec); err != nil {
		t.Fatal(err)
	}
	grant := func(key string, typ balance.GrantType, n int64, exp time.Time) {
		if _, err := store.Grant(ctx, balance.GrantRequest{Key: key, Subscription: sub, Type: typ, Amount: credit.Credits(n), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	grant("promo", balance.Promotional, 30, now.Add(48*time.Hour))
	grant("paid", balance.Purchased, 100, time.Time{})
	if _, err := store.TopUp(ctx, balance.TopUpRequest{Key: "t", Subscription: sub, Amount: credit.Credits(20)}); err != nil {
		t.Fatal(err)
	}
	w := archive.NewWriter(conn)
	offset := int64(0)
	use := func(events int, each string) {
		b := balance.Batch{Subscription: sub, Topic: "usage-events", Partition: 3}
		for i := 0; i < events; i++ {
			offset++
			b.Lines = append(b.Lines, balance.Line{EventID: fmt.Sprint("e", offset), Offset: offset, Time: now, Credits: credit.MustParse(each)})
		}
		res, err := store.Apply(ctx, []balance.Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		var rows []archive.RatedRow
		for i, lr := range res[0].Lines {
			r := archive.RatedRow{EventID: b.Lines[i].EventID, SubscriptionID: sub, Feature: "f", Credits: b.Lines[i].Credits,
				EventTime: now, RatedAt: now, Status: archive.StatusApplied, Topic: b.Topic, Partition: b.Partition, Offset: b.Lines[i].Offset}
			for _, d := range lr.Draws {
				r.GrantIDs = append(r.GrantIDs, d.Grant)
				r.GrantAmounts = append(r.GrantAmounts, d.Amount)
				r.Funded += d.Amount
			}
			if lr.Unfunded > 0 {
				r.Unfunded, r.Status = lr.Unfunded, archive.StatusUnfunded
			}
			rows = append(rows, r)
		}
		if err := w.WriteUsage(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	use(4, "5.5") // 22 from promo
	now = now.Add(72 * time.Hour)
	use(10, "9.75") // promo's 8 expired on this write; 97.5 from paid
	use(3, "10")    // 2.5 paid, 20 top-up, 7.5 unfunded
	grant("late", balance.Purchased, 50, time.Time{})
	use(1, "4") // 46 left of the late grant

	entries, err := store.Ledger(ctx, sub, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var rows []archive.LedgerRow
	for _, e := range entries {
		rows = append(rows, accounts.LedgerRow(sub, "c", e))
	}
	if err := w.WriteLedger(ctx, rows); err != nil {
		t.Fatal(err)
	}

	st, err := reconcile.ArchiveState(ctx, conn, sub)
	if err != nil {
		t.Fatal(err)
	}
	bal, err := store.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exact || st.LastSeq != entries[len(entries)-1].Seq || !st.Balance.Equal(bal.Total.Decimal()) ||
		!st.Unfunded.Equal(bal.Unfunded.Decimal()) || !st.Debt.Equal(bal.Debt.Decimal()) || st.Watermarks["usage-events/3"] != offset {
		t.Fatalf("archive state %+v\nredis %+v", st, bal)
	}
	redis := map[string]string{}
	for _, g := range bal.Grants {
		if g.Remaining > 0 {
			redis[g.ID] = g.Remaining.String()
		}
	}
	arch := map[string]string{}
	for _, g := range st.Grants {
		arch[g.ID] = g.Remaining.String()
		if g.Type != "purchased" {
			t.Errorf("grant %s: type %q from the ledger entry, want purchased", g.ID, g.Type)
		}
	}
	if fmt.Sprint(arch) != fmt.Sprint(redis) || len(arch) != 1 {
		t.Fatalf("grant remainders: archive %v, redis %v", arch, redis)
	}
	if !st.Unfunded.Equal(decimal.RequireFromString("7.5")) {
		t.Fatalf("unfunded %s, want 7.5", st.Unfunded)
	}

	// Redis loses the account: it is rebuilt from the archive alone.
	lose := func() { testenv.DeletePrefix(ctx, rc, prefix) }
	lose()
	if _, _, err := reconcile.Rebuild(ctx, store, conn, spec, reconcile.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := store.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if rebuilt.Total != bal.Total || rebuilt.Unfunded != bal.Unfunded || fmt.Sprint(rebuilt.Grants) != fmt.Sprint(bal.Grants) {
		t.Fatalf("rebuilt %+v\nlost %+v", rebuilt, bal)
	}
	if _, _, err := reconcile.Rebuild(ctx, store, conn, spec, reconcile.RebuildOptions{}); !errors.Is(err, balance.ErrConflict) {
		t.Fatalf("rebuilding a live account: %v, want ErrConflict", err)
	}
	// Redelivered events still count once: the watermark came back.
	again, err := store.Apply(ctx, []balance.Batch{{Subscription: sub, Topic: "usage-events", Partition: 3,
		Lines: []balance.Line{{EventID: "e1", Offset: 1, Time: now, Credits: credit.Credits(1)}}}})
	if err != nil || again[0].Lines[0].Status != balance.DuplicateOffset {
		t.Fatalf("redelivery after rebuild: %+v %v", again, err)
	}

	// A deduction draws from grants no archived row names: no longer exact,
	// the balance still is.
	res, err := store.Adjust(ctx, balance.AdjustRequest{Key: "d", Subscription: sub, Amount: -credit.Credits(6), Reason: "fix", Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	es, err := store.Ledger(ctx, sub, res.Seq, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteLedger(ctx, []archive.LedgerRow{accounts.LedgerRow(sub, "c", es[0])}); err != nil {
		t.Fatal(err)
	}
	if st, err = reconcile.ArchiveState(ctx, conn, sub); err != nil {
		t.Fatal(err)
	}
	if st.Exact || !st.Balance.Equal(decimal.NewFromInt(40)) {
		t.Fatalf("after a deduction: exact %v, balance %s; want false, 40", st.Exact, st.Balance)
	}
	want, err := store.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	lose()
	if _, _, err := reconcile.Rebuild(ctx, store, conn, spec, reconcile.RebuildOptions{}); !errors.Is(err, reconcile.ErrInexact) {
		t.Fatalf("inexact rebuild without force: %v", err)
	}
	if _, _, err := reconcile.Rebuild(ctx, store, conn, spec, reconcile.RebuildOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	got, err := store.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != want.Total || fmt.Sprint(got.Grants) != fmt.Sprint(want.Grants) {
		t.Fatalf("forced rebuild %+v\nlost %+v", got, want)
	}
}
