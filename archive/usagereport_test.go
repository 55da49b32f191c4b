package archive_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// dimRow is a rated line of cust/sub with the given dimensions (k, v, k, v…).
func dimRow(id, cust, sub, feature string, at time.Time, credits string, dims ...string) archive.RatedRow {
	c := credit.MustParse(credits)
	r := archive.RatedRow{
		EventID: id, CustomerID: cust, SubscriptionID: sub, Feature: feature, EventName: "llm.call",
		Quantity: decimal.NewFromInt(1), Credits: c, Funded: c, CreditCurrency: "AIT",
		MoneyValue: c.Decimal().Mul(decimal.RequireFromString("0.04")), MoneyCurrency: "USD",
		EventTime: at, RatedAt: at, Status: archive.StatusApplied, Topic: "usage-events",
	}
	for i := 0; i+1 < len(dims); i += 2 {
		r.DimKeys = append(r.DimKeys, dims[i])
		r.DimValues = append(r.DimValues, dims[i+1])
	}
	return r
}

func reportLines(rep archive.UsageReport) []string {
	var out []string
	for _, r := range rep.Rows {
		s := strings.TrimSpace(fmt.Sprintf("%s %s %s %s %s %s", r.Hour, r.Day, r.Month, r.Feature, r.CustomerID, r.SubscriptionID))
		for _, g := range rep.Groups {
			if k, ok := strings.CutPrefix(g, archive.DimPrefix); ok {
				s += " " + k + "=" + r.Dimensions[k]
			}
		}
		s += fmt.Sprintf(" %s %d", r.Credits, r.Events)
		out = append(out, strings.Join(strings.Fields(s), " "))
	}
	return out
}

// Rated lines keep their dimensions; a report groups and filters by them,
// by time bucket, feature, customer and subscription, each line once.
func TestReportByDimension(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	d1 := time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC)
	d2 := time.Date(2026, 11, 28, 9, 5, 0, 0, time.UTC)
	rows := []archive.RatedRow{
		dimRow("e1", "acme", "sub-a", "llm", d1, "3", "model", "gpt-x", "agent", "mailer"),
		dimRow("e2", "acme", "sub-a", "llm", d1.Add(time.Minute), "2", "model", "gpt-y", "agent", "mailer"),
		dimRow("e3", "acme", "sub-a2", "llm", d2, "5", "agent", "mailer", "model", "gpt-x"),
		dimRow("e4", "acme", "sub-a", "email", d2, "1", "agent", "outreach"),
		dimRow("e5", "globex", "sub-g", "llm", d1.Add(time.Hour), "7", "model", "gpt-x", "tokens", "1500"),
	}
	for i := 0; i < 2; i++ { // a redelivery writes them twice
		if err := w.WriteUsage(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	from, to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		q    archive.ReportQuery
		want []string
	}{
		{"day,feature,dim:model for acme", archive.ReportQuery{Customers: []string{"acme"}, Groups: []string{"day", "feature", "dim:model"}},
			[]string{"2026-11-27 llm model=gpt-x 3 1", "2026-11-27 llm model=gpt-y 2 1", "2026-11-28 email model= 1 1", "2026-11-28 llm model=gpt-x 5 1"}},
		{"dim:model everyone", archive.ReportQuery{Groups: []string{"dim:model"}},
			[]string{"model= 1 1", "model=gpt-x 15 3", "model=gpt-y 2 1"}},
		{"hour filtered by model", archive.ReportQuery{Groups: []string{"hour"}, Dims: map[string][]string{"model": {"gpt-x"}}},
			[]string{"2026-11-27T10:00:00Z 3 1", "2026-11-27T11:00:00Z 7 1", "2026-11-28T09:00:00Z 5 1"}},
		{"month,customer by feature llm and two agents", archive.ReportQuery{Groups: []string{"month", "customer"}, Features: []string{"llm"},
			Dims: map[string][]string{"agent": {"mailer", "outreach"}}}, []string{"2026-11 acme 10 3"}},
		{"subscription of two subs, number dimension", archive.ReportQuery{Subscriptions: []string{"sub-a", "sub-g"}, Groups: []string{"subscription", "dim:tokens"}},
			[]string{"sub-a tokens= 6 3", "sub-g tokens=1500 7 1"}},
		{"absent dimension filtered by ''", archive.ReportQuery{Groups: []string{"feature"}, Dims: map[string][]string{"model": {""}}},
			[]string{"email 1 1"}},
	} {
		c.q.From, c.q.To = from, to
		rep, err := archive.Report(ctx, conn, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := reportLines(rep); strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		if rep.NextCursor != "" {
			t.Errorf("%s: a next cursor on the only page", c.name)
		}
	}
	// Quantity only where the rows are of one feature.
	rep, err := archive.Report(ctx, conn, archive.ReportQuery{From: from, To: to, Groups: []string{"customer"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows[0].Quantity != nil {
		t.Errorf("quantity summed across features: %v", rep.Rows[0].Quantity)
	}
	rep, err = archive.Report(ctx, conn, archive.ReportQuery{From: from, To: to, Groups: []string{"customer"}, Features: []string{"llm"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows[0].Quantity == nil || rep.Rows[0].Quantity.String() != "3" {
		t.Errorf("acme's llm quantity = %v, want 3", rep.Rows[0].Quantity)
	}
}

// Pages follow each other by key: rows archived between two pages, before
// the cursor or after it, neither repeat nor skip a group.
func TestReportPagesStableUnderInserts(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var rows []archive.RatedRow
	for i := 0; i < 25; i++ {
		rows = append(rows, dimRow(fmt.Sprintf("e%d", i), "acme", "sub-a", "llm", at, "1", "agent", fmt.Sprintf("agent-%02d", i*2)))
	}
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	q := archive.ReportQuery{From: at.Add(-time.Hour), To: at.Add(time.Hour), Groups: []string{"dim:agent"}, Limit: 10}
	var seen []string
	for page := 0; ; page++ {
		rep, err := archive.Report(ctx, conn, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Rows) > 10 {
			t.Fatalf("page %d has %d rows", page, len(rep.Rows))
		}
		for _, r := range rep.Rows {
			seen = append(seen, r.Dimensions["agent"])
		}
		if page == 0 { // one group before the cursor, one after, one more line of a group already seen
			more := []archive.RatedRow{dimRow("late-1", "acme", "sub-a", "llm", at, "1", "agent", "agent-01"),
				dimRow("late-2", "acme", "sub-a", "llm", at, "1", "agent", "agent-47"),
				dimRow("late-3", "acme", "sub-a", "llm", at, "1", "agent", "agent-02")}
			if err := w.WriteUsage(ctx, more); err != nil {
				t.Fatal(err)
			}
		}
		if rep.NextCursor == "" {
			break
		}
		q.Cursor = rep.NextCursor
	}
	var want []string
	for i := 0; i < 25; i++ {
		want = append(want, fmt.Sprintf("agent-%02d", i*2))
	}
	want = append(want[:24], "agent-47", "agent-48") // agent-01 sorts before the cursor
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("pages saw\n %v\nwant\n %v", seen, want)
	}
	q.Cursor = "bm90IGEgY3Vyc29y"
	if _, err := archive.Report(ctx, conn, q); !errors.Is(err, archive.ErrInvalidQuery) {
		t.Errorf("a foreign cursor: %v, want ErrInvalidQuery", err)
	}
	for _, g := range [][]string{{}, {"week"}, {"day", "day"}, {"day", "hour"}, {"dim:"}} {
		if _, err := archive.Report(ctx, conn, archive.ReportQuery{From: q.From, To: q.To, Groups: g}); !errors.Is(err, archive.ErrInvalidQuery) {
			t.Errorf("group by %q: %v, want ErrInvalidQuery", g, err)
		}
	}
}
