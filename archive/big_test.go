package archive_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
)

// TestBigArchive times the invoice and usage queries on 10 million archived
// rated lines (1% of them redelivered duplicates): 1000 subscriptions over
// November 2026, one of them with 2 million lines. Not run in CI:
//
//	CREDITMETER_BIG=1 go test -run TestBigArchive -v -timeout 30m ./archive/
func TestBigArchive(t *testing.T) {
	if os.Getenv("CREDITMETER_BIG") != "1" {
		t.Skip("set CREDITMETER_BIG=1 to insert 10M rows and time the queries")
	}
	const (
		total   = 10_000_000
		bigRows = 2_000_000
		subs    = 1000
		batch   = 250_000
	)
	conn, w := migrated(t)
	ctx := context.Background()
	month := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	features := []string{"ai-agent-email", "llm-tokens", "web-search"}
	value := decimal.RequireFromString("0.04")
	amounts := make([]credit.Amount, 997)
	money := make([]decimal.Decimal, len(amounts))
	draws := make([][]credit.Amount, len(amounts))
	for i := range amounts {
		amounts[i] = credit.Amount(250_000 + i*1_003)
		money[i] = amounts[i].Decimal().Mul(value)
		draws[i] = []credit.Amount{amounts[i]}
	}
	one := decimal.NewFromInt(1)
	grants := []string{"g1"}
	// row i of the data set: rows [0, bigRows) belong to sub-big.
	gen := func(i int, r *archive.RatedRow) {
		sub := "sub-big"
		if i >= bigRows {
			sub = fmt.Sprintf("sub-%04d", i%(subs-1))
		}
		k := i % len(amounts)
		*r = archive.RatedRow{EventID: fmt.Sprintf("ev-%d", i), CustomerID: "cust-" + sub, SubscriptionID: sub,
			Feature: features[i%3], EventName: features[i%3], Quantity: one, Credits: amounts[k], Funded: amounts[k],
			CreditCurrency: "AIT", MoneyValue: money[k], MoneyCurrency: "USD",
			EventTime: month.Add(time.Duration(i%(30*86400)) * time.Second), RatedAt: month,
			GrantIDs: grants, GrantAmounts: draws[k], Status: archive.StatusApplied}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for wk := 0; wk < 2; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			rows := make([]archive.RatedRow, batch)
			for lo := wk * batch; lo < total; lo += 2 * batch {
				n := min(batch, total-lo)
				for j := 0; j < n; j++ {
					gen(lo+j, &rows[j])
				}
				if err := w.WriteUsage(ctx, rows[:n]); err != nil {
					errs <- err
					return
				}
			}
		}(wk)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	dups := make([]archive.RatedRow, 0, total/100)
	for i := 0; i < total; i += 100 {
		var r archive.RatedRow
		gen(i, &r)
		dups = append(dups, r)
	}
	if err := w.WriteUsage(ctx, dups); err != nil {
		t.Fatal(err)
	}
	ins := time.Since(start)
	t.Logf("insert %d rows + %d duplicates: %s (%.0f rows/s)", total, len(dups), ins.Round(time.Millisecond), float64(total+len(dups))/ins.Seconds())

	var ledger []archive.LedgerRow
	for s := 0; s < subs; s++ {
		sub := fmt.Sprintf("sub-%04d", s)
		if s == subs-1 {
			sub = "sub-big"
		}
		ledger = append(ledger,
			archive.LedgerRow{SubscriptionID: sub, Seq: 1, Kind: archive.KindGrant, Amount: credit.Credits(1_000_000), GrantID: "g1", GrantType: "purchased", CreatedAt: month},
			archive.LedgerRow{SubscriptionID: sub, Seq: 2, Kind: archive.KindTopUp, Amount: credit.Credits(500), GrantID: "g2", GrantType: "purchased", MoneyAmount: decimal.NewFromInt(20), MoneyCurrency: "USD", CreatedAt: month.AddDate(0, 0, 10)})
	}
	if err := w.WriteLedger(ctx, ledger); err != nil {
		t.Fatal(err)
	}

	timed := func(what string, f func() error) {
		t.Helper()
		s := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%-58s %s", what, time.Since(s).Round(time.Millisecond))
	}
	var days int
	timed("RefreshRollup, all 30k (subscription, day) pairs", func() (err error) {
		days, err = archive.RefreshRollup(ctx, conn, archive.RollupScope{})
		return err
	})
	// sub-big's lines are one second apart from the 1st: its 2M seconds span 24 days.
	if want := (subs-1)*30 + (bigRows+86399)/86400; days != want {
		t.Errorf("refreshed %d days, want %d", days, want)
	}
	terms := archive.InvoiceTerms{Currency: "USD", CreditValue: value, CreditCurrency: "AIT"}
	nextMonth := month.AddDate(0, 1, 0)
	for _, sub := range []string{"sub-big", "sub-0042"} {
		var inv archive.Invoice
		timed("BuildInvoice "+sub+" 2026-11", func() (err error) {
			inv, err = archive.BuildInvoice(ctx, conn, sub, "2026-11", terms)
			return err
		})
		var raw decimal.Decimal
		timed("  check: sum(credits) FROM rated_usage FINAL for "+sub, func() error {
			return conn.QueryRow(ctx, "SELECT sum(credits) FROM rated_usage FINAL WHERE subscription_id = ?", sub).Scan(&raw)
		})
		if !inv.UsageCredits.Equal(raw) || !inv.TotalDue.Equal(decimal.RequireFromString("40020")) {
			t.Errorf("%s: invoice usage %s, raw %s; due %s, want 40020 (1M purchased credits × 0.04 + a 20.00 top-up)", sub, inv.UsageCredits, raw, inv.TotalDue)
		}
		for _, g := range []string{archive.GroupByFeature, archive.GroupByDay} {
			timed("Usage "+sub+" month by "+g+" (rollup)", func() error {
				_, err := archive.Usage(ctx, conn, archive.UsageQuery{Subscription: sub, From: month, To: nextMonth, GroupBy: g})
				return err
			})
			timed("Usage "+sub+" month by "+g+" (raw FINAL, bounds not whole days)", func() error {
				_, err := archive.Usage(ctx, conn, archive.UsageQuery{Subscription: sub, From: month.Add(time.Second), To: nextMonth, GroupBy: g})
				return err
			})
		}
	}
	// New lines for today on the big subscription: the next read recomputes one day.
	fresh := make([]archive.RatedRow, 10_000)
	for j := range fresh {
		gen(j*30, &fresh[j])
		fresh[j].EventID = fmt.Sprintf("fresh-%d", j)
		fresh[j].EventTime = month.AddDate(0, 0, 26).Add(time.Duration(j) * time.Second)
	}
	if err := w.WriteUsage(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	timed("Usage sub-big by feature after 10k new lines (refreshes 1 day)", func() error {
		_, err := archive.Usage(ctx, conn, archive.UsageQuery{Subscription: "sub-big", From: month, To: nextMonth, GroupBy: archive.GroupByFeature})
		return err
	})
	timed("BuildInvoice sub-big 2026-11 after that", func() error {
		_, err := archive.BuildInvoice(ctx, conn, "sub-big", "2026-11", terms)
		return err
	})
}
