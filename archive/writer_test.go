package archive_test

import (
	"context"
	"errors"
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
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
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
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
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
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	if err := w.WriteUsage(ctx, []archive.RatedRow{{EventID: "x"}}); err == nil {
		t.Error("want error for a row without subscription")
	}
	if err := w.WriteLedger(ctx, []archive.LedgerRow{{SubscriptionID: "s", Kind: archive.KindGrant}}); err == nil {
		t.Error("want error for a ledger row without seq")
	}
}

// Times outside ClickHouse's DateTime range (1970-01-01 up to 2105) would
// be stored wrapped (2200-01-01 reads back as another date): the writer
// refuses them and inserts nothing of the batch.
func TestTimesOutsideDateTimeRefused(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	ok := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, bad := range []time.Time{
		time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC), time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), time.Unix(0, 0),
	} {
		rows := usageRows("sub-range", 2, ok)
		rows[1].EventTime = bad
		if err := w.WriteUsage(ctx, rows); !errors.Is(err, archive.ErrInvalidRow) {
			t.Errorf("event_time %s: %v, want ErrInvalidRow", bad, err)
		}
		rows = usageRows("sub-range", 1, ok)
		rows[0].RatedAt = bad
		if err := w.WriteUsage(ctx, rows); !errors.Is(err, archive.ErrInvalidRow) {
			t.Errorf("rated_at %s: %v, want ErrInvalidRow", bad, err)
		}
		lr := archive.LedgerRow{SubscriptionID: "sub-range", Seq: 1, Kind: archive.KindGrant, CreatedAt: bad}
		if err := w.WriteLedger(ctx, []archive.LedgerRow{lr}); !errors.Is(err, archive.ErrInvalidRow) {
			t.Errorf("created_at %s: %v, want ErrInvalidRow", bad, err)
		}
	}
	var n, m uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM rated_usage WHERE subscription_id = 'sub-range'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM credit_ledger WHERE subscription_id = 'sub-range'").Scan(&m); err != nil {
		t.Fatal(err)
	}
	if n != 0 || m != 0 {
		t.Errorf("%d rated_usage and %d credit_ledger rows reached the archive, want none", n, m)
	}
	// The last second of the range is stored as it is.
	last := time.Date(2105, 12, 31, 23, 59, 59, 0, time.UTC)
	rows := usageRows("sub-edge", 1, last)
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var got time.Time
	if err := conn.QueryRow(ctx, "SELECT event_time FROM rated_usage WHERE subscription_id = 'sub-edge'").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(last) {
		t.Errorf("event_time %s read back as %s", last, got)
	}
}

// TestUsageArraysRoundTrip: each row's grant and dimension arrays come back
// as written, whatever their lengths, and the writer's own work per row
// stays a few allocations (the array columns were appended by reflection,
// one allocation per element).
func TestUsageArraysRoundTrip(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rows := usageRows("sub-a", 300, at)
	for i := range rows {
		r := &rows[i]
		r.GrantIDs, r.GrantAmounts = nil, nil
		for g := 0; g < i%4; g++ {
			r.GrantIDs = append(r.GrantIDs, fmt.Sprintf("g%d-%d", i, g))
			r.GrantAmounts = append(r.GrantAmounts, credit.Amount(1000*i+g))
		}
		for d := 0; d < i%3; d++ {
			r.DimKeys, r.DimValues = append(r.DimKeys, fmt.Sprintf("k%d", d)), append(r.DimValues, fmt.Sprintf("v%d-%d", i, d))
		}
	}
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got, err := conn.Query(ctx, "SELECT event_id, grant_ids, grant_amounts_micro, dim_keys, dim_values FROM rated_usage FINAL WHERE subscription_id = 'sub-a'")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	byID := map[string]*archive.RatedRow{}
	for i := range rows {
		byID[rows[i].EventID] = &rows[i]
	}
	n := 0
	for got.Next() {
		var id string
		var gids, keys, values []string
		var amounts []int64
		if err := got.Scan(&id, &gids, &amounts, &keys, &values); err != nil {
			t.Fatal(err)
		}
		r := byID[id]
		if r == nil {
			t.Fatalf("unknown event %s", id)
		}
		n++
		want := make([]int64, len(r.GrantAmounts))
		for i, a := range r.GrantAmounts {
			want[i] = int64(a)
		}
		if fmt.Sprint(gids, amounts, keys, values) != fmt.Sprint(nonNil(r.GrantIDs), want, nonNil(r.DimKeys), nonNil(r.DimValues)) {
			t.Fatalf("%s: got grants %v %v dims %v %v, want %+v", id, gids, amounts, keys, values, r)
		}
	}
	if n != len(rows) {
		t.Fatalf("%d rows back, want %d", n, len(rows))
	}
	perRow := testing.AllocsPerRun(3, func() {
		if err := w.WriteUsage(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}) / float64(len(rows))
	if perRow > 11 { // 15.5 by reflection, 9.3 a row at a time
		t.Errorf("WriteUsage: %.1f allocations per row, want at most 11", perRow)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
