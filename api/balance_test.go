package api_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
)

// newBalanceEnv serves the API over the real catalog store, balance store
// (Redis) and archive (ClickHouse), wired as creditmeter serve wires them.
func newBalanceEnv(t *testing.T, admins ...string) (*env, *archive.Writer, func() decimal.Decimal) {
	t.Helper()
	st := apptest.Stores(t)
	conn, w, store, acc := st.Conn, st.Writer, st.Catalog, st.Accounts
	srv := api.NewServer(api.Options{Catalog: store, Ledger: acc, Balances: acc, Reports: archive.Reports{Conn: conn}, AdminTokens: append([]string{admin}, admins...)})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	archived := func() decimal.Decimal {
		var sum decimal.Decimal
		if err := conn.QueryRow(context.Background(), "SELECT sum(amount) FROM credit_ledger FINAL").Scan(&sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	return &env{t: t, url: hs.URL, srv: srv}, w, archived
}

func TestBalanceTopUpAdjustFlow(t *testing.T) {
	e, _, archived := newBalanceEnv(t)
	e.seed()
	c := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1")
	id := c.body["id"].(string)
	base := "/v1/subscriptions/" + id

	b := e.must(200, "GET", base+"/balance", admin, "")
	if b.body["total"] != "100" || b.body["available"] != "100" || b.body["credit_currency"] != "AIT" || b.body["policy"] != "unfunded" {
		t.Fatalf("balance after creation: %s", b.raw)
	}
	if g := b.body["grants"].([]any); len(g) != 1 || g[0].(map[string]any)["type"] != "promotional" {
		t.Fatalf("grants: %s", b.raw)
	}

	// The customer's own token works; another customer's does not see it.
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	other := e.must(201, "POST", "/v1/customers/globex/tokens", admin, "").body["token"].(string)
	e.must(200, "GET", base+"/balance", tok, "")
	e.must(404, "GET", base+"/balance", other, "")
	e.must(404, "POST", base+"/topups", other, `{"amount":"500"}`, "Idempotency-Key", "x")

	// Top-ups: the plan's min/max apply, the key is required, the charge is amount × 0.04.
	r := e.must(400, "POST", base+"/topups", tok, `{"amount":"500"}`)
	if _, f, _ := r.err(); f != "Idempotency-Key" {
		t.Errorf("missing key: %s", r.raw)
	}
	r = e.must(422, "POST", base+"/topups", tok, `{"amount":"100"}`, "Idempotency-Key", "t-small")
	if code, f, _ := r.err(); code != "below_minimum" || f != "amount" {
		t.Errorf("below minimum: %s", r.raw)
	}
	r = e.must(422, "POST", base+"/topups", tok, `{"amount":"8000.5"}`, "Idempotency-Key", "t-big")
	if code, _, _ := r.err(); code != "above_maximum" {
		t.Errorf("above maximum: %s", r.raw)
	}
	r = e.must(201, "POST", base+"/topups", tok, `{"amount":"500"}`, "Idempotency-Key", "t-1")
	if r.body["charge"] != "20" || r.body["currency"] != "USD" || r.body["balance"] != "600" {
		t.Fatalf("top-up: %s", r.raw)
	}
	again := e.must(200, "POST", base+"/topups", tok, `{"amount":"500"}`, "Idempotency-Key", "t-1")
	if again.body["seq"] != r.body["seq"] || again.body["replayed"] != true || again.body["balance"] != "600" {
		t.Errorf("replayed top-up: %s", again.raw)
	}
	e.must(409, "POST", base+"/topups", tok, `{"amount":"600"}`, "Idempotency-Key", "t-1")

	// Adjustments: admin only, reason and actor required, no silent negative balance.
	e.must(403, "POST", base+"/adjustments", tok, `{"amount":"-10","reason":"x","actor":"a"}`, "Idempotency-Key", "a-0")
	r = e.must(400, "POST", base+"/adjustments", admin, `{"amount":"-10","actor":"alice"}`, "Idempotency-Key", "a-1")
	if _, f, _ := r.err(); f != "reason" {
		t.Errorf("missing reason: %s", r.raw)
	}
	r = e.must(422, "POST", base+"/adjustments", admin, `{"amount":"-700","reason":"refund","actor":"alice"}`, "Idempotency-Key", "a-2")
	if code, _, _ := r.err(); code != "insufficient_balance" {
		t.Errorf("deduction beyond balance: %s", r.raw)
	}
	r = e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-50","reason":"goodwill correction","actor":"alice"}`, "Idempotency-Key", "a-3")
	if r.body["balance"] != "550" {
		t.Errorf("after deduction: %s", r.raw)
	}

	ck := e.must(200, "POST", base+"/check", tok, `{"amount":"550"}`)
	if ck.body["allowed"] != true || ck.body["available"] != "550" {
		t.Errorf("check 550: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base+"/check", tok, `{"amount":"550.000001"}`); ck.body["allowed"] != false {
		t.Errorf("check beyond: %s", ck.raw)
	}

	l := e.must(200, "GET", base+"/ledger", tok, "")
	entries := l.body["entries"].([]any)
	kinds := ""
	sum := decimal.Zero
	for _, x := range entries {
		en := x.(map[string]any)
		kinds += en["kind"].(string) + " "
		sum = sum.Add(decimal.RequireFromString(en["amount"].(string)))
	}
	if kinds != "grant topup adjustment " || !sum.Equal(decimal.NewFromInt(550)) {
		t.Fatalf("ledger kinds %q sum %s: %s", kinds, sum, l.raw)
	}
	// The customer sees a generic reason (the adjustment is not public); an
	// admin sees the reason, the admin token's name as actor and the body's
	// actor as a note.
	if adj := entries[2].(map[string]any); adj["reason"] != "balance adjustment" || adj["actor"] != nil {
		t.Errorf("customer's view of an adjustment: %v", adj)
	}
	adj := e.must(200, "GET", base+"/ledger", admin, "").body["entries"].([]any)[2].(map[string]any)
	if adj["reason"] != "goodwill correction" || adj["actor"] != "admin" || adj["note"] != "alice" {
		t.Errorf("adjustment entry lacks reason/actor/note: %v", adj)
	}
	// Every entry reached the archive: its sum equals the balance.
	if got := archived(); !got.Equal(decimal.NewFromInt(550)) {
		t.Errorf("archived ledger sums to %s, want 550", got)
	}

	// The month's invoice bills the top-up (500 × 0.04 USD) and nothing else.
	period := time.Now().UTC().Format("2006-01")
	inv := e.must(200, "GET", base+"/invoices?period="+period, tok, "")
	if inv.body["topups"] != "20" || inv.body["total_due"] != "20" || inv.body["currency"] != "USD" || inv.body["closing_balance"] != "550" {
		t.Errorf("invoice: %s", inv.raw)
	}
	e.must(400, "GET", base+"/invoices?period=2026-13", tok, "")
	e.must(404, "GET", base+"/invoices?period="+period, other, "")
	csv := e.do("GET", base+"/invoices?period="+period+"&format=csv", tok, "")
	if csv.status != 200 || !strings.Contains(csv.raw, "topup") {
		t.Errorf("csv invoice: %d %s", csv.status, csv.raw)
	}
	u := e.must(200, "GET", base+"/usage?from=2026-01-01&to=2026-12-31&group_by=feature", tok, "")
	if rows := u.body["rows"].([]any); len(rows) != 0 {
		t.Errorf("usage without events: %s", u.raw)
	}
	r = e.must(400, "GET", base+"/usage?from=yesterday&to=2099-01-01", tok, "")
	if _, f, _ := r.err(); f != "from" {
		t.Errorf("bad from: %s", r.raw)
	}
}
