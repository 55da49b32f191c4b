package api_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
)

// Issue 18.2: GET …/usage groups by time bucket, feature and dimensions,
// filters by feature and dimension, answers CSV, per subscription, per
// customer (all its subscriptions) and across customers with pages; a
// parameter it does not know is a 400 naming it.
func TestUsageByDimension(t *testing.T) {
	e, w, _ := newBalanceEnv(t)
	e.seed()
	sub1 := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "s-1").body["id"].(string)
	other := strings.NewReplacer(`"product":"ai-agents"`, `"product":"ai-agents-2"`, `"ai-prepaid"`, `"ai-prepaid-2"`)
	e.must(201, "POST", "/v1/plans", admin, other.Replace(planJSON))
	// The customer's earlier subscription, ended before sub1 started (a
	// customer has one active subscription at a time).
	earlier := strings.NewReplacer(`"schedule":{"start":"now"}`, `"schedule":{"start":"at","at":"`+time.Now().Add(-30*24*time.Hour).UTC().Format(time.RFC3339)+`"},"end_at":"`+
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+`"`).Replace(other.Replace(seedSub))
	sub2 := e.must(201, "POST", "/v1/subscriptions", admin, earlier, "Idempotency-Key", "s-2").body["id"].(string)
	globex := e.must(201, "POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"customer_id":"acme"`, `"customer_id":"globex"`, 1),
		"Idempotency-Key", "s-3").body["id"].(string)
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)

	at := time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC)
	line := func(id, cust, sub, feature string, t time.Time, credits string, dims ...string) archive.RatedRow {
		c := credit.MustParse(credits)
		r := archive.RatedRow{EventID: id, CustomerID: cust, SubscriptionID: sub, Feature: feature, EventName: "email.sent",
			Quantity: decimal.NewFromInt(1), Credits: c, Funded: c, CreditCurrency: "AIT", MoneyValue: c.Decimal().Mul(decimal.RequireFromString("0.04")),
			MoneyCurrency: "USD", EventTime: t, RatedAt: t, Status: archive.StatusApplied, Topic: "usage-events"}
		for i := 0; i+1 < len(dims); i += 2 {
			r.DimKeys, r.DimValues = append(r.DimKeys, dims[i]), append(r.DimValues, dims[i+1])
		}
		return r
	}
	if err := w.WriteUsage(context.Background(), []archive.RatedRow{
		line("e1", "acme", sub1, "ai-agent-email", at, "1", "model", "gpt-x", "agent", "mailer"),
		line("e2", "acme", sub1, "ai-agent-email", at.Add(time.Hour), "2", "model", "gpt-y"),
		line("e3", "acme", sub2, "ai-agent-email", at.Add(24*time.Hour), "4", "model", "gpt-x"),
		line("e4", "acme", sub2, "storage", at, "8", "model", "gpt-x"),
		line("e5", "globex", globex, "ai-agent-email", at, "16", "model", "gpt-x"),
	}); err != nil {
		t.Fatal(err)
	}
	span := "from=2026-11-01&to=2026-12-01"
	rows := func(r resp) []string {
		var out []string
		for _, x := range r.body["rows"].([]any) {
			m := x.(map[string]any)
			s := ""
			for _, k := range []string{"hour", "day", "month", "feature", "customer_id", "subscription_id"} {
				if v, ok := m[k]; ok {
					s += v.(string) + " "
				}
			}
			if d, ok := m["dimensions"].(map[string]any); ok {
				s += fmt.Sprint(d) + " "
			}
			if q, ok := m["quantity"]; ok {
				s += "q" + q.(string) + " "
			}
			out = append(out, s+m["credits"].(string))
		}
		return out
	}
	check := func(name string, r resp, want ...string) {
		t.Helper()
		if got := rows(r); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}

	// One subscription: the former shapes, then day,feature,dim:model.
	check("sub1 by feature", e.must(200, "GET", "/v1/subscriptions/"+sub1+"/usage?"+span, tok, ""), "ai-agent-email q2 3")
	check("sub1 by day,feature,dim:model", e.must(200, "GET", "/v1/subscriptions/"+sub1+"/usage?"+span+"&group_by=day,feature,dim:model", tok, ""),
		"2026-11-27 ai-agent-email map[model:gpt-x] q1 1", "2026-11-27 ai-agent-email map[model:gpt-y] q1 2")
	check("sub1 by hour", e.must(200, "GET", "/v1/subscriptions/"+sub1+"/usage?"+span+"&group_by=hour", tok, ""),
		"2026-11-27T10:00:00Z 1", "2026-11-27T11:00:00Z 2")
	// The customer: both subscriptions, not globex; filtered by feature and dimension.
	bySub := []string{"2026-11 " + sub1 + " 3", "2026-11 " + sub2 + " 12"}
	sort.Strings(bySub) // ordered by subscription id
	check("acme by month,subscription", e.must(200, "GET", "/v1/customers/acme/usage?"+span+"&group_by=month,subscription", tok, ""), bySub...)
	check("acme email by dim:model", e.must(200, "GET", "/v1/customers/acme/usage?"+span+"&group_by=dim:model&feature=ai-agent-email", tok, ""),
		"map[model:gpt-x] q2 5", "map[model:gpt-y] q1 2")
	check("acme gpt-x by feature", e.must(200, "GET", "/v1/customers/acme/usage?"+span+"&dim=model:gpt-x", tok, ""),
		"ai-agent-email q2 5", "storage q1 8")
	// CSV.
	c := e.must(200, "GET", "/v1/customers/acme/usage?"+span+"&group_by=day,dim:model&feature=ai-agent-email&format=csv", tok, "")
	if ct := c.header.Get("Content-Type"); ct != "text/csv" {
		t.Errorf("CSV content type %q", ct)
	}
	recs, err := csv.NewReader(strings.NewReader(c.raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(recs); got != "[[day dim:model quantity credits funded_credits unfunded_credits credit_currency money_value money_currency events] "+
		"[2026-11-27 gpt-x 1 1 1 0 AIT 0.04 USD 1] [2026-11-27 gpt-y 1 2 2 0 AIT 0.08 USD 1] [2026-11-28 gpt-x 1 4 4 0 AIT 0.16 USD 1]]" {
		t.Errorf("CSV: %s", got)
	}
	// Across customers, page by page (admin only).
	var seen []string
	cursor := ""
	for page := 0; ; page++ {
		p := e.must(200, "GET", "/v1/usage?"+span+"&group_by=customer,feature&limit=2&cursor="+url.QueryEscape(cursor), admin, "")
		seen = append(seen, rows(p)...)
		if page == 0 { // a line of a customer sorting after the cursor arrives meanwhile
			if err := w.WriteUsage(context.Background(), []archive.RatedRow{line("e6", "globex", globex, "storage", at, "32")}); err != nil {
				t.Fatal(err)
			}
		}
		next, _ := p.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if want := "ai-agent-email acme q3 7|storage acme q1 8|ai-agent-email globex q1 16|storage globex q1 32"; strings.Join(seen, "|") != want {
		t.Errorf("pages across customers:\n got %q\nwant %q", seen, want)
	}
	check("admin filtered by customer", e.must(200, "GET", "/v1/usage?"+span+"&group_by=feature&customer=globex&subscription="+globex, admin, ""),
		"ai-agent-email q1 16", "storage q1 32")

	// Errors name the parameter.
	for _, c := range []struct{ path, token, field string }{
		{"/v1/subscriptions/" + sub1 + "/usage?" + span + "&format=xml", tok, "format"},
		{"/v1/subscriptions/" + sub1 + "/usage?" + span + "&group_by=week", tok, "group_by"},
		{"/v1/subscriptions/" + sub1 + "/usage?" + span + "&group_by=day,hour", tok, "group_by"},
		{"/v1/subscriptions/" + sub1 + "/usage?" + span + "&feature=nope", tok, "feature"},
		{"/v1/subscriptions/" + sub1 + "/usage?" + span + "&model=gpt-x", tok, "model"},
		{"/v1/subscriptions/" + sub1 + "/usage?" + span + "&dim=model", tok, "dim"},
		{"/v1/customers/acme/usage?" + span + "&customer=globex", tok, "customer"},
		{"/v1/customers/acme/usage?" + span + "&limit=0", tok, "limit"},
		{"/v1/usage?" + span + "&cursor=bm9wZQ", admin, "cursor"},
		{"/v1/usage?from=2026-11-01", admin, "to"},
	} {
		r := e.must(400, "GET", c.path, c.token, "")
		if _, f, _ := r.err(); f != c.field {
			t.Errorf("%s: field %q, want %q: %s", c.path, f, c.field, r.raw)
		}
	}
	e.must(403, "GET", "/v1/customers/globex/usage?"+span, tok, "")
	e.must(403, "GET", "/v1/usage?"+span, tok, "")
	e.must(404, "GET", "/v1/customers/nobody/usage?"+span, admin, "")
}
