package console_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// TestConsoleUsageByDimension: events with a model dimension go through the
// engine into the archive; the usage page (reached from the customer page,
// the admin's nav and the customer's nav) groups them by day, feature and
// dim:model, pages them, and its CSV link answers CSV. The features and
// subscribe pages name UNIQUE_COUNT and MAX meters as such.
func TestConsoleUsageByDimension(t *testing.T) {
	s := newStack(t)
	s.seed(t)
	s.call(t, "POST", "/v1/features", `{"id":"ai-seats","name":"AI Seats","meter":{"kind":"event_based","event_name":"seat.used","aggregation":"UNIQUE_COUNT","dimension":"user"}}`, 201)
	s.call(t, "POST", "/v1/features", `{"id":"ai-latency","name":"AI Latency","meter":{"kind":"event_based","event_name":"call.done","aggregation":"MAX","dimension":"ms"}}`, 201)
	s.call(t, "POST", "/v1/plans", `{"id":"seats","product":"ai-seats","name":"Seats","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"1.00"}],
	    "consumption":[{"feature_id":"ai-seats","credits_per_unit":"5"}],"overage_policy":"unfunded"}}`, 201)
	s.call(t, "POST", "/v1/customers", `{"id":"globex","name":"Globex"}`, 201)

	// 3 emails by gpt-x, 1 by gpt-y, 1 without a model; then 10 more
	// models for paging.
	now := time.Now().UTC()
	var msgs []kafka.Message
	add := func(id, model string) {
		ev := rating.Event{ID: id, CustomerID: "acme", Name: "email.sent", Timestamp: now}
		if model != "" {
			ev.Dims = []rating.Dim{{Key: "model", Str: model}}
		}
		msgs = append(msgs, kafka.Message{Key: []byte("acme"), Value: ingest.AppendJSON(nil, &ev)})
	}
	for i := range 3 {
		add(fmt.Sprint("x-", i), "gpt-x")
	}
	add("y-0", "gpt-y")
	add("none-0", "")
	for i := range 10 {
		add(fmt.Sprint("m-", i), fmt.Sprintf("m%02d", i))
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := s.events.PublishRaw(pctx, msgs...); err != nil {
		t.Fatal(err)
	}
	pcancel()
	// Wait until the engine archived all 15.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.call(t, "GET", "/v1/customers/acme/usage?from="+now.Format("2006-01-02")+"&to="+now.Add(24*time.Hour).Format("2006-01-02")+"&group_by=feature", "", 200)
		rows, _ := r["rows"].([]any)
		if len(rows) == 1 && rows[0].(map[string]any)["events"] == float64(15) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the archive holds %v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}

	b := newBrowser(t)
	b.signIn(s.url, admin, "")

	// The real aggregations, not "COUNT".
	b.click(`#nav a[href="#/features"]`)
	b.waitText("#features", "UNIQUE_COUNT(user)")
	b.waitText("#features", "MAX(ms)")
	b.waitText("#features", `event "email.sent" · COUNT`)
	b.open(s.url + "/console/#/customers/globex/subscribe")
	b.waitText("h1", "Create subscription")
	b.fill("sub-product", "ai-seats")
	b.fill("sub-plan", "seats")
	b.fill("sub-currency", "USD")
	b.click("#sub-preview-btn")
	b.waitText("#preview-consumption", `event "seat.used" · UNIQUE_COUNT(user)`)

	// From the customer page: by day, feature and dim:model.
	today := now.Format("2006-01-02")
	b.open(s.url + "/console/#/customers/acme")
	b.waitText("h1", "Acme Inc")
	b.click("#customer-usage")
	b.waitText("h1", "Usage of acme")
	b.waitText("#usage-table tbody", "15") // day, feature: one row of 15 events
	b.fill("usage-dims", "dim:model")
	b.click("#usage-show")
	b.waitText("#usage-table thead", "dim:model")
	row := func(model string) string {
		return eval[string](b, fmt.Sprintf(`(() => { for (const tr of document.querySelectorAll('#usage-table tbody tr')) {
			const c = tr.querySelector('td[data-group="dim:model"]'); if (c && c.textContent === %q) return tr.innerText; } return ''; })()`, model))
	}
	deadline = time.Now().Add(10 * time.Second)
	for row("gpt-x") == "" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for model, want := range map[string][]string{"gpt-x": {today, "ai-agent-email", "3 AIT", "0.12 USD", "3"}, "gpt-y": {"1 AIT", "0.04 USD"}, "(none)": {"1 AIT"}} {
		got := row(model)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("the %s row reads %q, want %q in it", model, got, w)
			}
		}
	}
	b.screenshot("usage-by-model")

	// Pages of 10: 13 models, so the next page holds 3 rows.
	b.fill("usage-limit", "10")
	b.click("#usage-show")
	b.waitText("#usage-shown", "Page 1: 10 rows; more on the next page")
	b.click("#usage-next")
	b.waitText("#usage-shown", "Page 2: 3 rows")
	if b.exists("#usage-next:not([disabled])") {
		t.Error("Next is enabled on the last page")
	}
	b.click("#usage-prev")
	b.waitText("#usage-shown", "Page 1: 10 rows")

	// The CSV link answers CSV, one column per grouping.
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	csv, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => { const r = await fetch(document.getElementById('usage-csv').dataset.url,
		{ headers: { Authorization: 'Bearer ' + sessionStorage.getItem('cm.token') } });
		return r.headers.get('Content-Type') + '\n' + await r.text(); })()`, chromedp.EvalAwaitPromise))
	cancel()
	if err != nil {
		b.fail("fetch the CSV link: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if !strings.HasPrefix(lines[0], "text/csv") || len(lines) < 3 || !strings.HasPrefix(lines[1], "day,feature,dim:model,") ||
		!strings.Contains(csv, today+",ai-agent-email,gpt-x,") {
		t.Errorf("the CSV link answers %q", csv)
	}
	b.click("#usage-csv")
	b.waitText("#usage-csv-status", "Saved usage-acme-")

	// An unknown feature is refused next to the feature filter.
	b.fill("usage-feature", "nope")
	b.click("#usage-show")
	b.waitNonEmpty("#usage-feature-error")

	// The admin's nav: across customers, grouped by customer.
	b.click(`#nav a[href="#/usage"]`)
	b.waitText("h1", "Usage")
	b.click("#usage-by-customer")
	b.click("#usage-show")
	b.waitText("#usage-table thead", "customer")
	b.waitText("#usage-table tbody", "acme")
	b.noProblem()

	// The customer's own usage.
	tok := s.call(t, "POST", "/v1/customers/acme/tokens", "", 201)["token"].(string)
	b.signIn(s.url, tok, "acme")
	b.click(`#nav a[href="#/my/usage"]`)
	b.waitText("h1", "Usage")
	b.fill("usage-dims", "model")
	b.click("#usage-show")
	b.waitText("#usage-table tbody", "gpt-y")
	b.noProblem()
	if u := s.unroutedCalls(); len(u) > 0 {
		t.Errorf("calls matching no API route: %v", u)
	}
}
