package archive_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// An archive written by the release before the Int64 columns (migrations
// 1-8, Decimal(38, 9) columns) is migrated: its rows read exactly through
// the new columns and every reader, the old column names still answer for
// old and new rows, and no Decimal is stored any more.
func TestInt64MigrationKeepsDecimalRows(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := archive.MigrateUpTo(ctx, cc, 8); err != nil {
		t.Fatal(err)
	}
	d := decimal.RequireFromString
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	writeDecimalRows(t, conn, at, "sub-1")
	db, err := conn.PrepareBatch(ctx, `INSERT INTO usage_daily (subscription_id, day, feature, customer_id, quantity, credits, funded_credits,
		unfunded_credits, money_value, credit_currency, money_currency, events, version)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Append("sub-0", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), "f", "c", d("2"), d("7.000001"), d("7"), d("0.000001"), d("0.28000004"),
		"AIT", "USD", uint64(1), uint64(1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Send(); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 2; i++ {
		if err := archive.Migrate(ctx, cc); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
	}
	w := archive.NewWriter(conn)
	c := credit.MustParse("2.000001")
	if err := w.WriteUsage(ctx, []archive.RatedRow{{EventID: "e-new", CustomerID: "cust-1", SubscriptionID: "sub-1", Feature: "llm-tokens",
		EventName: "llm", Quantity: d("2000.001"), Credits: c, Funded: c, CreditCurrency: "AIT", MoneyValue: d("0.08000004"), MoneyCurrency: "USD",
		EventTime: at.Add(time.Hour), RatedAt: at, GrantIDs: []string{"g1"}, GrantAmounts: []credit.Amount{c}, Status: archive.StatusApplied}}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteLedger(ctx, []archive.LedgerRow{{SubscriptionID: "sub-1", Seq: 3, CustomerID: "cust-1", Kind: archive.KindUsage,
		Amount: -c, BalanceAfter: -credit.MustParse("2.234568"), EventCount: 1, CreatedAt: at.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	// The Decimal columns are ALIAS columns, the new ones Int64.
	kinds := queryLines(t, conn, `SELECT table, name, type, default_kind FROM system.columns WHERE database = currentDatabase()
		AND (name LIKE '%_micro' OR name LIKE '%_nano' OR name IN ('credits', 'funded_credits', 'unfunded_credits', 'money_value', 'grant_amounts', 'amount', 'balance_after'))
		ORDER BY table, name`)
	for _, l := range kinds {
		f := strings.Fields(l)
		isNew, kind := strings.HasSuffix(f[1], "_micro") || strings.HasSuffix(f[1], "_nano"), f[len(f)-1]
		if isNew && (!strings.Contains(f[2], "Int64") || kind != "DEFAULT") || !isNew && kind != "ALIAS" {
			t.Errorf("column %s", l)
		}
	}
	if len(kinds) != 22 {
		t.Errorf("%d columns:\n%s", len(kinds), strings.Join(kinds, "\n"))
	}
	if got := queryLines(t, conn, `SELECT count() FROM system.parts WHERE database = currentDatabase() AND active AND table IN ('rated_usage', 'credit_ledger', 'usage_daily')
		AND (table, name) NOT IN (SELECT table, name FROM system.parts_columns WHERE database = currentDatabase() AND active AND column IN ('credits_micro', 'amount_micro'))`); got[0] != "0" {
		t.Errorf("%s active parts lack the Int64 columns", got[0])
	}

	check := func(what, sql string, want ...string) {
		t.Helper()
		if got := queryLines(t, conn, sql); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\ngot\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	check("rated_usage Int64 columns", `SELECT event_id, credits_micro, funded_credits_micro, unfunded_credits_micro, money_value_nano, grant_amounts_micro
		FROM rated_usage FINAL ORDER BY event_id`,
		"e-new 2000001 2000001 0 80000040 [2000001]", "e-old 1234567 1000000 234567 49382680 [1000000]")
	check("rated_usage old names", `SELECT event_id, toString(credits), toString(unfunded_credits), toString(money_value), toString(grant_amounts), toString(quantity)
		FROM rated_usage FINAL ORDER BY event_id`,
		"e-new 2.000001000 0.000000000 0.080000040 [2.000001000] 2000.001000000", "e-old 1.234567000 0.234567000 0.049382680 [1.000000000] 1234.500000000")
	check("credit_ledger", `SELECT seq, amount_micro, balance_after_micro, toString(amount), toString(money_amount) FROM credit_ledger FINAL ORDER BY seq`,
		"1 1000000 1000000 1.000000000 0.040000000", "2 -1234567 -234567 -1.234567000 0.000000000", "3 -2000001 -2234568 -2.000001000 0.000000000")
	check("usage_daily", `SELECT subscription_id, credits_micro, unfunded_credits_micro, money_value_nano, toString(credits) FROM usage_daily FINAL ORDER BY subscription_id`,
		"sub-0 7000001 1 280000040 7.000001000")

	// The readers.
	u, err := archive.Usage(ctx, conn, archive.UsageQuery{Subscription: "sub-1", From: at.Truncate(24 * time.Hour), To: at.AddDate(0, 0, 1).Truncate(24 * time.Hour), GroupBy: archive.GroupByFeature})
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 1 || u[0].Credits.String() != "3.234568" || u[0].FundedCredits.String() != "3.000001" || u[0].UnfundedCredits.String() != "0.234567" ||
		u[0].MoneyValue.String() != "0.12938272" || u[0].Quantity.String() != "3234.501" || u[0].Events != 2 {
		t.Errorf("usage %+v", u)
	}
	entries, err := archive.LedgerEntries(ctx, conn, "sub-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || entries[1].Amount != -1_234_567 || entries[1].BalanceAfter != -234_567 || entries[2].Amount != -c || !entries[0].MoneyAmount.Equal(d("0.04")) {
		t.Errorf("ledger %+v", entries)
	}
	inv, err := archive.BuildInvoice(ctx, conn, "sub-1", "2026-11", archive.InvoiceTerms{CustomerID: "cust-1", Currency: "USD", CreditValue: d("0.04"), CreditCurrency: "AIT"})
	if err != nil {
		t.Fatal(err)
	}
	if inv.ClosingBalance.String() != "-2.234568" || inv.UsageCredits.String() != "3.234568" || inv.PurchasedGrants.String() != "0.04" {
		t.Errorf("invoice closing %s usage %s purchased %s", inv.ClosingBalance, inv.UsageCredits, inv.PurchasedGrants)
	}
	// A writer of the previous release is refused, not archiving zeros.
	if old, err := conn.PrepareBatch(ctx, `INSERT INTO credit_ledger (subscription_id, seq, kind, amount, balance_after, created_at, version)`); err == nil {
		_ = old.Abort()
		t.Error("an insert of the ALIAS column amount was accepted")
	}
}

// The writer stores credits and money exactly or refuses the row: money
// finer than 10^-9 or beyond Int64 nano-units, amounts beyond ±MaxAmount.
func TestWriterRefusesAmountsItCannotStoreExactly(t *testing.T) {
	conn, w := migrated(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	ok := func() archive.RatedRow {
		return archive.RatedRow{EventID: "e1", SubscriptionID: "sub-1", Feature: "f", Quantity: decimal.NewFromInt(1), Credits: credit.Unit, Funded: credit.Unit,
			MoneyValue: decimal.RequireFromString("9223372036.854775807"), EventTime: at, RatedAt: at, Status: archive.StatusApplied}
	}
	if err := w.WriteUsage(ctx, []archive.RatedRow{ok()}); err != nil {
		t.Fatalf("the largest money value: %v", err)
	}
	for name, bad := range map[string]func(*archive.RatedRow){
		"money 10 decimals":  func(r *archive.RatedRow) { r.MoneyValue = decimal.RequireFromString("0.0000000001") },
		"money beyond Int64": func(r *archive.RatedRow) { r.MoneyValue = decimal.RequireFromString("9223372036.854775808") },
		"credits beyond max": func(r *archive.RatedRow) { r.Credits = credit.MaxAmount + 1 },
		"funded beyond max":  func(r *archive.RatedRow) { r.Funded = -credit.MaxAmount - 1 },
		"grant amount too big": func(r *archive.RatedRow) {
			r.GrantIDs, r.GrantAmounts = []string{"g"}, []credit.Amount{credit.MaxAmount + 1}
		},
		"grants and amounts ≠": func(r *archive.RatedRow) { r.GrantIDs, r.GrantAmounts = []string{"g", "h"}, []credit.Amount{1} },
	} {
		r := ok()
		bad(&r)
		if err := w.WriteUsage(ctx, []archive.RatedRow{r}); !errors.Is(err, archive.ErrInvalidRow) {
			t.Errorf("%s: err = %v, want ErrInvalidRow", name, err)
		}
	}
	if err := w.WriteLedger(ctx, []archive.LedgerRow{{SubscriptionID: "sub-1", Seq: 1, Kind: archive.KindGrant, Amount: credit.MaxAmount + 1,
		BalanceAfter: credit.MaxAmount + 1, CreatedAt: at}}); !errors.Is(err, archive.ErrInvalidRow) {
		t.Errorf("ledger amount beyond max: err = %v, want ErrInvalidRow", err)
	}
	if got := queryLines(t, conn, "SELECT count(), sum(money_value_nano) FROM rated_usage"); got[0] != "1 9223372036854775807" {
		t.Errorf("rated_usage holds %s", got[0])
	}
}

// The query that crashes ClickHouse 18.16 (GROUP BY a String and a
// Decimal(38, 9)) runs over the Int64 columns; on a private server, since
// the Decimal form of it (the old names) still kills an 18.x server.
func TestGroupByInt64NotDecimal(t *testing.T) {
	procs := testenv.StartClickHouseCluster(t, "solo", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc := archive.ConnConfig{Addr: procs[0].Addr, Database: "g_" + testenv.RandomID(t), User: "default"}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seedExamples(t, conn, archive.NewWriter(conn))
	got := queryLines(t, conn, `SELECT customer_id, credits_micro, count() FROM rated_usage FINAL
		WHERE event_time < toDateTime('2026-12-01 00:00:00', 'UTC') GROUP BY customer_id, credits_micro ORDER BY customer_id, credits_micro`)
	if want := "cust-a 1000000 2|cust-a 2500000 1|cust-b 1000000 1|cust-b 4000000 1"; strings.Join(got, "|") != want {
		t.Errorf("GROUP BY customer_id, credits_micro: got %q, want %q", got, want)
	}
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(version, "18.") {
		return
	}
	// What README.md warns of: the ALIAS Decimal column as a key.
	rows, err := conn.Query(ctx, "SELECT customer_id, credits, count() FROM rated_usage GROUP BY customer_id, credits")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if err == nil || conn.Ping(ctx) == nil {
		t.Logf("ClickHouse %s survived GROUP BY String, Decimal(38, 9) (err %v): README.md's warning may be stale", version, err)
	}
}

// writeDecimalRows archives, as the release before the Int64 columns did
// (Decimal values), one rated line and two ledger entries of each sub.
func writeDecimalRows(t *testing.T, conn driver.Conn, at time.Time, subs ...string) {
	t.Helper()
	ctx := context.Background()
	d := decimal.RequireFromString
	b, err := conn.PrepareBatch(ctx, `INSERT INTO rated_usage (event_id, line, customer_id, subscription_id, feature, event_name,
		quantity, credits, funded_credits, unfunded_credits, credit_currency, money_value, money_currency,
		event_time, event_time_ms, rated_at, grant_ids, grant_amounts, status, source_topic, source_partition, source_offset, version)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		if err := b.Append("e-old", uint16(0), "cust-1", sub, "llm-tokens", "llm", d("1234.5"), d("1.234567"), d("1"), d("0.234567"),
			"AIT", d("0.049382680"), "USD", at, uint16(0), at, []string{"g1"}, []decimal.Decimal{d("1")}, "overage", "t", int32(0), int64(7), uint64(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	lb, err := conn.PrepareBatch(ctx, `INSERT INTO credit_ledger (subscription_id, seq, customer_id, kind, amount, balance_after,
		credit_currency, grant_id, grant_type, money_amount, money_currency, event_count, created_at, version)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		for _, e := range []struct {
			seq          uint64
			kind         string
			amount, bal  string
			money, grant string
		}{{1, "grant", "1", "1", "0.04", "g1"}, {2, "usage", "-1.234567", "-0.234567", "0", ""}} {
			if err := lb.Append(sub, e.seq, "cust-1", e.kind, d(e.amount), d(e.bal), "AIT", e.grant, "purchased", d(e.money), "USD",
				uint64(1), at, uint64(1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := lb.Send(); err != nil {
		t.Fatal(err)
	}
}

// The same migration in cluster mode: the mutation runs on each shard's
// local tables, the ALIAS columns are on the Distributed ones too.
func TestInt64MigrationOnCluster(t *testing.T) {
	procs := testenv.StartClickHouseCluster(t, "cm", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc := archive.ConnConfig{Addr: procs[0].Addr, Database: "cl_" + testenv.RandomID(t), User: "default", Cluster: "cm"}
	if err := archive.MigrateUpTo(ctx, cc, 8); err != nil {
		t.Fatal(err)
	}
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	subs := []string{"sub-1", "sub-2", "sub-3", "sub-4", "sub-5", "sub-6"}
	writeDecimalRows(t, conn, time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC), subs...)
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	got := queryLines(t, conn, `SELECT count(), sum(credits_micro), sum(money_value_nano), toString(sum(credits)), toString(sum(grant_amounts_micro[1]))
		FROM rated_usage FINAL`)
	if want := "6 7407402 296296080 7.407402000 6000000"; got[0] != want {
		t.Errorf("rated_usage: got %s, want %s", got[0], want)
	}
	got = queryLines(t, conn, `SELECT count(), sum(amount_micro), min(balance_after_micro), toString(sum(amount)) FROM credit_ledger FINAL`)
	if want := "12 -1407402 -234567 -1.407402000"; got[0] != want {
		t.Errorf("credit_ledger: got %s, want %s", got[0], want)
	}
	for i, p := range procs {
		hc := cc
		hc.Addr, hc.Cluster = p.Addr, ""
		h, err := archive.Open(ctx, hc)
		if err != nil {
			t.Fatal(err)
		}
		n := queryLines(t, h, `SELECT count() FROM system.parts WHERE database = currentDatabase() AND active AND table IN ('rated_usage_local', 'credit_ledger_local')
			AND (table, name) NOT IN (SELECT table, name FROM system.parts_columns WHERE database = currentDatabase() AND active AND column IN ('credits_micro', 'amount_micro'))`)
		rows := queryLines(t, h, `SELECT count() FROM rated_usage_local`)
		h.Close()
		if n[0] != "0" || rows[0] == "0" {
			t.Errorf("shard %d: %s rows, %s active parts lack the Int64 columns", i, rows[0], n[0])
		}
	}
}

func TestFixedInt64ExactOrRefused(t *testing.T) {
	for _, c := range []struct {
		d     string
		scale int32
		want  int64
		ok    bool
	}{
		{"1.5", 6, 1_500_000, true}, {"-2.000001", 6, -2_000_001, true}, {"0", 9, 0, true}, {"0.0000001", 6, 0, false},
		{"0.04938268", 9, 49_382_680, true}, {"0.0000000001", 9, 0, false}, {"1.5000000000", 6, 1_500_000, true},
		{"9223372036.854775807", 9, 9_223_372_036_854_775_807, true}, {"-9223372036.854775808", 9, -9_223_372_036_854_775_808, true},
		{"9223372036.854775808", 9, 0, false}, {"1e20", 6, 0, false}, {"12e3", 6, 12_000_000_000, true},
		{"12345678901234567800e-11", 9, 123_456_789_012_345_678, true}, // coefficient beyond int64
		{"12345678901234567890e-11", 9, 0, false},
	} {
		got, ok := archive.FixedInt64(decimal.RequireFromString(c.d), c.scale)
		if got != c.want || ok != c.ok {
			t.Errorf("FixedInt64(%s, %d) = %d, %v; want %d, %v", c.d, c.scale, got, ok, c.want, c.ok)
		}
	}
}

// A day whose credits add up beyond Int64 micro-credits (1,025 lines of
// MaxAmount) is refused by the rollup, not wrapped; the raw table's usage,
// summed as Decimal, is exact.
func TestRollupRefusesSumBeyondInt64(t *testing.T) {
	conn, w := migrated(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	rows := make([]archive.RatedRow, 1025)
	for i := range rows {
		rows[i] = archive.RatedRow{EventID: fmt.Sprintf("e%d", i), SubscriptionID: "sub-1", Feature: "f", Quantity: decimal.NewFromInt(1),
			Credits: credit.MaxAmount, Unfunded: credit.MaxAmount, EventTime: at, RatedAt: at, Status: archive.StatusUnfunded}
	}
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err == nil || !strings.Contains(err.Error(), "beyond Int64") {
		t.Errorf("RefreshRollup: err = %v, want beyond Int64", err)
	}
	u, err := archive.Usage(ctx, conn, archive.UsageQuery{Subscription: "sub-1", From: at.Add(-time.Hour), To: at.Add(time.Hour), GroupBy: archive.GroupByFeature})
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 1 || u[0].Credits.String() != "9225000000000" || u[0].UnfundedCredits.String() != "9225000000000" {
		t.Errorf("usage %+v", u)
	}
}
