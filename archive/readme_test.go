package archive_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
)

// readmeQueries are the ```sql blocks of README.md by their "-- name:" line.
func readmeQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)```sql\n-- name: (\\w+)\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// sqlByName splits a file of queries, each starting with "-- name: NAME".
func sqlByName(s string) map[string]string {
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?s)-- name: (\w+)\n(.*?)(?:\n\n|$)`).FindAllStringSubmatch(s, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// seedExamples: two customers in November 2026, one December line,
// duplicates of both tables, overage, unfunded usage, a top-up, an expiry.
func seedExamples(t *testing.T, conn driver.Conn, w *archive.Writer) {
	t.Helper()
	ctx := context.Background()
	v := decimal.RequireFromString("0.04")
	at := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	row := func(sub, ev, f string, t time.Time, qty int64, c, funded string) archive.RatedRow {
		cr, fu := credit.MustParse(c), credit.MustParse(funded)
		r := archive.RatedRow{EventID: ev, CustomerID: "cust-" + sub[4:], SubscriptionID: sub, Feature: f, EventName: f,
			Quantity: decimal.NewFromInt(qty), Credits: cr, Funded: fu, Unfunded: cr - fu, CreditCurrency: "AIT",
			MoneyValue: cr.Decimal().Mul(v), MoneyCurrency: "USD", EventTime: t, RatedAt: t, Status: archive.StatusApplied}
		if fu > 0 {
			r.GrantIDs, r.GrantAmounts = []string{"g1"}, []credit.Amount{fu}
		}
		return r
	}
	rated := []archive.RatedRow{
		row("sub-a", "e1", "ai-agent-email", at(3, 10), 1, "1", "1"),
		row("sub-a", "e2", "llm-tokens", at(3, 11), 2500, "2.5", "2.5"),
		row("sub-a", "e3", "ai-agent-email", at(4, 9), 1, "1", "1"),
		row("sub-b", "f1", "ai-agent-email", at(3, 12), 1, "1", "0"),
		row("sub-b", "f2", "llm-tokens", at(5, 8), 4000, "4", "2.5"),
		row("sub-a", "d1", "ai-agent-email", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), 1, "1", "1"),
	}
	dims := [][]string{{"agent", "mailer"}, {"model", "gpt-x", "agent", "mailer"}, {"agent", "outreach"}, {"agent", "mailer"},
		{"model", "gpt-y", "tokens", "4000"}, {"agent", "mailer"}}
	for i, d := range dims {
		for j := 0; j < len(d); j += 2 {
			rated[i].DimKeys, rated[i].DimValues = append(rated[i].DimKeys, d[j]), append(rated[i].DimValues, d[j+1])
		}
	}
	rated[3].Status = archive.StatusUnfunded
	rated[4].Status = archive.StatusOverage
	ledger := []archive.LedgerRow{
		{SubscriptionID: "sub-a", Seq: 1, CustomerID: "cust-a", Kind: archive.KindGrant, Amount: credit.Credits(100), BalanceAfter: credit.Credits(100), GrantID: "g1", GrantType: "purchased", CreatedAt: at(1, 0)},
		{SubscriptionID: "sub-a", Seq: 2, CustomerID: "cust-a", Kind: archive.KindTopUp, Amount: credit.Credits(50), BalanceAfter: credit.Credits(150), GrantID: "g2", GrantType: "purchased", MoneyAmount: decimal.NewFromInt(2), MoneyCurrency: "USD", CreatedAt: at(2, 0)},
		{SubscriptionID: "sub-a", Seq: 3, CustomerID: "cust-a", Kind: archive.KindUsage, Amount: -credit.MustParse("4.5"), BalanceAfter: credit.MustParse("145.5"), EventCount: 3, CreatedAt: at(4, 9)},
		{SubscriptionID: "sub-a", Seq: 4, CustomerID: "cust-a", Kind: archive.KindExpiry, Amount: -credit.Credits(10), BalanceAfter: credit.MustParse("135.5"), GrantID: "g1", CreatedAt: at(30, 0)},
		{SubscriptionID: "sub-b", Seq: 1, CustomerID: "cust-b", Kind: archive.KindGrant, Amount: credit.MustParse("2.5"), BalanceAfter: credit.MustParse("2.5"), GrantID: "g1", GrantType: "promotional", CreatedAt: at(1, 0)},
		{SubscriptionID: "sub-b", Seq: 2, CustomerID: "cust-b", Kind: archive.KindUsage, Amount: -credit.MustParse("4"), BalanceAfter: -credit.MustParse("1.5"), EventCount: 2, CreatedAt: at(5, 8)},
	}
	for i := 0; i < 2; i++ { // everything twice: a redelivery
		if err := w.WriteUsage(ctx, rated); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteLedger(ctx, ledger); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := archive.RefreshRollup(ctx, conn, archive.RollupScope{}); err != nil {
		t.Fatal(err)
	}
}

// queryLines runs sql and renders each row as space-separated values.
func queryLines(t *testing.T, conn driver.Conn, sql string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]any, len(rows.ColumnTypes()))
		for i, ct := range rows.ColumnTypes() {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch x := reflect.ValueOf(v).Elem().Interface().(type) {
			case time.Time:
				if x.Equal(x.Truncate(24 * time.Hour)) {
					parts[i] = x.UTC().Format(time.DateOnly)
				} else {
					parts[i] = x.UTC().Format(time.DateTime)
				}
			case decimal.Decimal:
				parts[i] = x.String()
			default:
				parts[i] = fmt.Sprint(x)
			}
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadmeQueries(t *testing.T) {
	conn, w := migrated(t)
	checkReadmeQueries(t, conn, w)
}

// checkReadmeQueries seeds the examples through w and runs every README
// query on conn.
func checkReadmeQueries(t *testing.T, conn driver.Conn, w *archive.Writer) {
	seedExamples(t, conn, w)
	byDay := []string{
		"cust-a ai-agent-email 2026-11-03 1000000 1 1",
		"cust-a ai-agent-email 2026-11-04 1000000 1 1",
		"cust-a llm-tokens 2026-11-03 2500000 2500 1",
		"cust-b ai-agent-email 2026-11-03 1000000 1 1",
		"cust-b llm-tokens 2026-11-05 4000000 4000 1",
	}
	want := map[string][]string{
		"usage_by_customer_feature_day":     byDay,
		"usage_by_customer_feature_day_raw": byDay,
		"usage_per_subscription_argmax":     {"sub-a 4500000 3", "sub-b 5000000 2"},
		"credits_vs_money":                  {"sub-a 150000000 2 4500000 180000000", "sub-b 2500000 0 5000000 200000000"},
		"top_spenders":                      {"cust-b 5 0.2", "cust-a 4.5 0.18"},
		"breakage":                          {"sub-a g1 10000000 2026-11-30"},
		"unfunded_usage":                    {"sub-b ai-agent-email unfunded 1000000 1", "sub-b llm-tokens overage 1500000 1"},
		"ledger_balances":                   {"sub-a 135500000 4 1", "sub-b -1500000 2 1"},
		"credits_by_model":                  {"cust-a gpt-x 2500000 1", "cust-b gpt-y 4000000 1"},
		"credits_by_dimension": {"agent mailer 4500000 3", "agent outreach 1000000 1", "model gpt-x 2500000 1", "model gpt-y 4000000 1",
			"tokens 4000 4000000 1"},
		"agent_usage_by_day": {"2026-11-03 ai-agent-email 2000000 2", "2026-11-03 llm-tokens 2500000 2500"},
		"reporting_meters":   {"ai-agent-email 1 1 1 3", "llm-tokens 4000 4000 3250 2"},
	}
	checkQueries(t, conn, readmeQueries(t), want)
}

// legacyWant are the results of the README queries of the Decimal schema.
var legacyWant = map[string][]string{
	"usage_by_customer_feature_day":     legacyByDay,
	"usage_by_customer_feature_day_raw": legacyByDay,
	"usage_per_subscription_argmax":     {"sub-a 4.5 3", "sub-b 5 2"},
	"credits_vs_money":                  {"sub-a 150 2 4.5 0.18", "sub-b 2.5 0 5 0.2"},
	"top_spenders":                      {"cust-b 5 0.2", "cust-a 4.5 0.18"},
	"breakage":                          {"sub-a g1 10 2026-11-30"},
	"unfunded_usage":                    {"sub-b ai-agent-email unfunded 1 1", "sub-b llm-tokens overage 1.5 1"},
	"ledger_balances":                   {"sub-a 135.5 4 1", "sub-b -1.5 2 1"},
}

var legacyByDay = []string{
	"cust-a ai-agent-email 2026-11-03 1 1 1",
	"cust-a ai-agent-email 2026-11-04 1 1 1",
	"cust-a llm-tokens 2026-11-03 2.5 2500 1",
	"cust-b ai-agent-email 2026-11-03 1 1 1",
	"cust-b llm-tokens 2026-11-05 4 4000 1",
}

// SQL written against the Decimal(38, 9) columns (the README before
// migration 13) gives the same answers through their ALIAS columns.
func TestLegacyQueriesStillAnswer(t *testing.T) {
	conn, w := migrated(t)
	seedExamples(t, conn, w)
	b, err := os.ReadFile("testdata/legacy_queries.sql")
	if err != nil {
		t.Fatal(err)
	}
	checkQueries(t, conn, sqlByName(string(b)), legacyWant)
}

// decimalColumns are the Decimal columns (stored or ALIAS) of the archive.
var decimalColumns = regexp.MustCompile(`\b(credits|funded_credits|unfunded_credits|money_value|grant_amounts|amount|balance_after|money_amount|quantity)\b`)

var groupBy = regexp.MustCompile(`(?is)GROUP BY (.*?)(HAVING|ORDER BY|LIMIT|\)|$)`)

// checkQueries runs each query and compares its rows with want. No query
// may group by a Decimal column: ClickHouse 18.16 crashes on GROUP BY over a
// String and a Decimal(38, 9) (never run such a query on a shared server).
func checkQueries(t *testing.T, conn driver.Conn, qs map[string]string, want map[string][]string) {
	t.Helper()
	if len(qs) != len(want) {
		t.Errorf("%d named queries, the test expects %d", len(qs), len(want))
	}
	for name, sql := range qs {
		for _, g := range groupBy.FindAllStringSubmatch(sql, -1) {
			if c := decimalColumns.FindString(g[1]); c != "" {
				t.Fatalf("query %s groups by the Decimal column %s", name, c)
			}
		}
	}
	for name, sql := range qs {
		w, ok := want[name]
		if !ok {
			t.Errorf("query %s has no expected result here", name)
			continue
		}
		if got := queryLines(t, conn, sql); strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("%s:\ngot\n  %s\nwant\n  %s", name, strings.Join(got, "\n  "), strings.Join(w, "\n  "))
		}
	}
}
