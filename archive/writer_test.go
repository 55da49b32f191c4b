package archive_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

func TestMigrateIsIdempotent(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := archive.Migrate(ctx, cc); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(len(archive.Migrations)) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(archive.Migrations))
	}
}

func usageRows(sub string, n int, at time.Time) []archive.RatedRow {
	rows := make([]archive.RatedRow, n)
	for i := range rows {
		c := credit.Amount(1_000_000 + i) // 1.000000 + i micro-credits
		rows[i] = archive.RatedRow{
			EventID: fmt.Sprintf("ev-%d", i), CustomerID: "cust-1", SubscriptionID: sub,
			Feature: "ai-agent-email", EventName: "email.sent", Quantity: decimal.NewFromInt(1),
			Credits: c, Funded: c, CreditCurrency: "AIT", MoneyValue: c.Decimal().Mul(decimal.RequireFromString("0.04")),
			MoneyCurrency: "USD", EventTime: at.Add(time.Duration(i) * time.Millisecond), RatedAt: at,
			GrantIDs: []string{"g1"}, GrantAmounts: []credit.Amount{c}, Status: archive.StatusApplied,
			Topic: "usage-events", Partition: 1, Offset: int64(i),
		}
	}
	return rows
}

// Writing the same rows twice (a redelivery) leaves each once under FINAL,
// with exact sums.
func TestUsageDuplicatesCollapse(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rows := usageRows("sub-1", 500, at)
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteUsage(ctx, rows[100:300]); err != nil {
		t.Fatal(err)
	}
	want := decimal.Zero
	for _, r := range rows {
		want = want.Add(r.Credits.Decimal())
	}
	var n uint64
	var sum decimal.Decimal
	if err := conn.QueryRow(ctx, "SELECT count(), sum(credits) FROM rated_usage FINAL WHERE subscription_id = 'sub-1'").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 500 || !sum.Equal(want) {
		t.Fatalf("FINAL: %d rows summing %s, want 500 summing %s", n, sum, want)
	}
	var ms uint16
	var gid []string
	if err := conn.QueryRow(ctx, "SELECT event_time_ms, grant_ids FROM rated_usage FINAL WHERE event_id = 'ev-7'").Scan(&ms, &gid); err != nil {
		t.Fatal(err)
	}
	if ms != 7 || len(gid) != 1 || gid[0] != "g1" {
		t.Fatalf("ev-7: ms=%d grants=%v", ms, gid)
	}
}

func TestLedgerDuplicatesCollapse(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rows := []archive.LedgerRow{
		{SubscriptionID: "s", Seq: 1, Kind: archive.KindGrant, Amount: credit.Credits(100), BalanceAfter: credit.Credits(100), GrantType: "promotional", CreatedAt: at},
		{SubscriptionID: "s", Seq: 2, Kind: archive.KindUsage, Amount: -credit.MustParse("2.5"), BalanceAfter: credit.MustParse("97.5"), EventCount: 3, CreatedAt: at},
		{SubscriptionID: "s", Seq: 3, Kind: archive.KindTopUp, Amount: credit.Credits(500), BalanceAfter: credit.MustParse("597.5"), MoneyAmount: decimal.RequireFromString("20.00"), MoneyCurrency: "USD", CreatedAt: at},
	}
	for i := 0; i < 2; i++ {
		if err := w.WriteLedger(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	var n uint64
	var sum decimal.Decimal
	if err := conn.QueryRow(ctx, "SELECT count(), sum(amount) FROM credit_ledger FINAL WHERE subscription_id = 's'").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 3 || !sum.Equal(decimal.RequireFromString("597.5")) {
		t.Fatalf("ledger FINAL: %d rows summing %s", n, sum)
	}
}

func TestInvalidRowsRejected(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	w := archive.NewWriter(conn)
	if err := w.WriteUsage(ctx, []archive.RatedRow{{EventID: "x"}}); err == nil {
		t.Error("want error for a row without subscription")
	}
	if err := w.WriteLedger(ctx, []archive.LedgerRow{{SubscriptionID: "s", Kind: archive.KindGrant}}); err == nil {
		t.Error("want error for a ledger row without seq")
	}
}
