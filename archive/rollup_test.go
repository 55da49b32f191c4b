package archive_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

func migrated(t *testing.T) (driver.Conn, *archive.Writer) {
	t.Helper()
	conn, _ := testenv.Archive(t)
	return conn, archive.NewWriter(conn)
}

// mixedRows: n events of sub spread over three days of November 2026, two
// features, amounts with micro-credit fractions.
func mixedRows(sub string, n int) []archive.RatedRow {
	base := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)
	rows := make([]archive.RatedRow, n)
	for i := range rows {
		f, q := "ai-agent-email", decimal.NewFromInt(1)
		c := credit.Amount(1_000_000 + i*7)
		if i%3 == 0 {
			f, q = "llm-tokens", decimal.NewFromInt(int64(100+i))
			c = credit.Amount(250_000 * (i%5 + 1))
		}
		rows[i] = archive.RatedRow{
			EventID: fmt.Sprintf("%s-ev-%d", sub, i), CustomerID: "cust-" + sub, SubscriptionID: sub,
			Feature: f, EventName: "agent." + f, Quantity: q, Credits: c, Funded: c, CreditCurrency: "AIT",
			MoneyValue: c.Decimal().Mul(decimal.RequireFromString("0.04")), MoneyCurrency: "USD",
			EventTime: base.Add(time.Duration(i%3)*24*time.Hour + time.Duration(i)*time.Second), RatedAt: base,
			GrantIDs: []string{"g1"}, GrantAmounts: []credit.Amount{c}, Status: archive.StatusApplied,
		}
	}
	return rows
}

// rawSums is the ground truth: rated_usage FINAL summed per group.
func rawSums(t *testing.T, conn driver.Conn, sub, group string) map[string][2]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT toString(`+group+`) AS g, toString(sum(credits)), toString(count())
		FROM rated_usage FINAL WHERE subscription_id = ? GROUP BY g`, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var g, c, n string
		if err := rows.Scan(&g, &c, &n); err != nil {
			t.Fatal(err)
		}
		out[g] = [2]string{decimal.RequireFromString(c).String(), n}
	}
	return out
}

func usageSums(t *testing.T, conn driver.Conn, q archive.UsageQuery) map[string][2]string {
	t.Helper()
	res, err := archive.Usage(context.Background(), conn, q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, r := range res {
		k := r.Feature + r.Day
		out[k] = [2]string{r.Credits.String(), fmt.Sprint(r.Events)}
	}
	return out
}

func sameSums(t *testing.T, what string, got, want map[string][2]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d groups %v, want %d %v", what, len(got), got, len(want), want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("%s: group %q = %v, want %v", what, k, got[k], w)
		}
	}
}

// The rollup equals the raw table's deduplicated sums with redelivered
// duplicates present, after a duplicate that changed its values, and after
// one whose row moved to another day.
func TestRollupExactWithDuplicates(t *testing.T) {
	conn, w := migrated(t)
	ctx := context.Background()
	rows := mixedRows("sub-a", 300)
	other := mixedRows("sub-b", 50)
	for _, batch := range [][]archive.RatedRow{rows, other, rows[10:120], rows[200:], rows[10:20]} {
		if err := w.WriteUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	nov := archive.UsageQuery{Subscription: "sub-a", From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	check := func(stage string) {
		t.Helper()
		for _, g := range []string{archive.GroupByFeature, archive.GroupByDay} {
			q := nov
			q.GroupBy = g
			col := "feature"
			if g == archive.GroupByDay {
				col = "toDate(event_time)"
			}
			want := rawSums(t, conn, "sub-a", col)
			sameSums(t, stage+" rollup by "+g, usageSums(t, conn, q), want)
			q.To = q.To.Add(-time.Second) // not whole days: read from the raw table
			sameSums(t, stage+" raw by "+g, usageSums(t, conn, q), want)
		}
	}
	check("duplicates")

	// The rollup itself, read plainly, after the refresh Usage ran.
	var rollup, raw decimal.Decimal
	var rollupEvents, rawEvents uint64
	if err := conn.QueryRow(ctx, "SELECT sum(credits), sum(events) FROM usage_daily FINAL WHERE subscription_id = 'sub-a'").Scan(&rollup, &rollupEvents); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT sum(credits), count() FROM rated_usage FINAL WHERE subscription_id = 'sub-a'").Scan(&raw, &rawEvents); err != nil {
		t.Fatal(err)
	}
	var want decimal.Decimal
	for _, r := range rows {
		want = want.Add(r.Credits.Decimal())
	}
	if !rollup.Equal(want) || !raw.Equal(want) || rollupEvents != 300 || rawEvents != 300 {
		t.Fatalf("rollup %s/%d, raw %s/%d, want %s/300", rollup, rollupEvents, raw, rawEvents, want)
	}

	// A later copy with other values replaces the first (highest version).
	changed := append([]archive.RatedRow(nil), rows[5:8]...)
	for i := range changed {
		changed[i].Credits += credit.Credits(3)
	}
	// And one moves to another day, taking a feature off its old day.
	moved := rows[0] // llm-tokens on day 0
	moved.EventTime = moved.EventTime.Add(10 * 24 * time.Hour)
	if err := w.WriteUsage(ctx, append(changed, moved)); err != nil {
		t.Fatal(err)
	}
	check("changed")

	if n, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err != nil || n != 3 {
		t.Fatalf("refresh of everything recomputed %d days, err %v; want sub-b's 3 (sub-a's queries refreshed only sub-a)", n, err)
	}
	if n, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err != nil || n != 0 {
		t.Fatalf("second refresh recomputed %d days, err %v; want 0", n, err)
	}
}

func TestUsageRejectsBadQueries(t *testing.T) {
	conn, _ := migrated(t)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []archive.UsageQuery{
		{From: at, To: at.AddDate(0, 1, 0), GroupBy: "day"},
		{Subscription: "s", From: at, To: at, GroupBy: "day"},
		{Subscription: "s", From: at, To: at.AddDate(0, 1, 0), GroupBy: "hour"},
		{Subscription: "s", From: at, To: at.AddDate(2, 0, 0), GroupBy: "day"},
	} {
		if _, err := archive.Usage(context.Background(), conn, q); err == nil {
			t.Errorf("%+v: want ErrInvalidQuery", q)
		}
	}
}

func TestParseUsageQuery(t *testing.T) {
	q, err := archive.ParseUsageQuery("s", "2026-11-01", "2026-11-03T12:00:00+01:00", "")
	if err != nil {
		t.Fatal(err)
	}
	if q.GroupBy != archive.GroupByFeature || !q.From.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) || !q.To.Equal(time.Date(2026, 11, 3, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v", q)
	}
	for _, bad := range [][2]string{{"2026-11", "2026-12-01"}, {"2026-11-01", "tomorrow"}} {
		if _, err := archive.ParseUsageQuery("s", bad[0], bad[1], "day"); !errors.Is(err, archive.ErrInvalidQuery) {
			t.Errorf("%v: err %v, want ErrInvalidQuery", bad, err)
		}
	}
}

func TestKeepRollupFresh(t *testing.T) {
	conn, w := migrated(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		archive.KeepRollupFresh(ctx, conn, 50*time.Millisecond, func(err error) { t.Errorf("refresh: %v", err) })
	}()
	defer func() { cancel(); <-done }()
	rows := mixedRows("sub-k", 30)
	if err := w.WriteUsage(context.Background(), append(rows, rows[:10]...)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n uint64
		if err := conn.QueryRow(context.Background(), "SELECT sum(events) FROM usage_daily FINAL WHERE subscription_id = 'sub-k'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 30 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage_daily has %d events of sub-k after 10s, want 30", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A profile with join_use_nulls=1 must not stop the rollup: days never
// computed are found and recomputed, and a second refresh finds nothing.
func TestRollupWithJoinUseNulls(t *testing.T) {
	conn, w := migrated(t)
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{"join_use_nulls": 1}))
	rows := mixedRows("sub-n", 30)
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if n, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err != nil || n != 3 {
		t.Fatalf("refresh with join_use_nulls=1 recomputed %d days, err %v; want the 3 new days", n, err)
	}
	var got decimal.Decimal
	var events uint64
	if err := conn.QueryRow(ctx, "SELECT sum(credits), sum(events) FROM usage_daily FINAL WHERE subscription_id = 'sub-n'").Scan(&got, &events); err != nil {
		t.Fatal(err)
	}
	var want decimal.Decimal
	for _, r := range rows {
		want = want.Add(r.Credits.Decimal())
	}
	if !got.Equal(want) || events != 30 {
		t.Fatalf("usage_daily has %s credits / %d events, want %s / 30", got, events, want)
	}
	if n, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err != nil || n != 0 {
		t.Fatalf("second refresh recomputed %d days, err %v; want 0", n, err)
	}
	// A day with a new row is found again.
	extra := rows[1]
	extra.EventID = "sub-n-extra"
	if err := w.WriteUsage(ctx, []archive.RatedRow{extra}); err != nil {
		t.Fatal(err)
	}
	if n, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err != nil || n != 1 {
		t.Fatalf("refresh after a new row recomputed %d days, err %v; want its day", n, err)
	}
}
