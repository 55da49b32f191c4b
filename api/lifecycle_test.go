package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/balance"
)

const proPlanJSON = `{"id":"ai-pro","product":"ai-agents","name":"AI Agents Pro","type":"paid","billing_model":"prepaid",
  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},
    "currency_values":[{"currency":"USD","value":"0.80"}],
    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"0.5"}],
    "low_balance":{"credits":"10"},"overage_policy":"unfunded","on_end":{"remaining_credits":"expire","refund_purchased":true}}}`

// Issue 17 item 1: a subscription has a status, may be back-dated, cancelled
// now or at a date, and changed to another plan; a second subscription may
// not silently take over the customer's events while the first runs.
func TestSubscriptionLifecycleAPI(t *testing.T) {
	e, _, _ := newBalanceEnvOpts(t, balance.Options{})
	e.seed()
	e.must(201, "POST", "/v1/plans", admin, proPlanJSON)
	first := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1")
	id := first.body["id"].(string)
	if first.body["status"] != "active" || first.body["end_at"] != nil {
		t.Fatalf("new subscription: %s", first.raw)
	}

	// Overlap refused, naming the running subscription.
	r := e.must(409, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-2")
	if code, _, msg := r.err(); code != "subscription_overlap" || !strings.Contains(msg, id) {
		t.Fatalf("overlap: %s", r.raw)
	}

	// Plan change now: the old one ends, the successor starts, linked.
	ch := e.must(201, "POST", "/v1/subscriptions/"+id+"/change-plan", admin, `{"plan_id":"ai-pro"}`, "Idempotency-Key", "change-1")
	prev, next := ch.body["previous"].(map[string]any), ch.body["subscription"].(map[string]any)
	nid, _ := next["id"].(string)
	if prev["status"] != "ended" || prev["replaced_by"] != nid || next["replaces"] != id || next["status"] != "active" ||
		next["plan_id"] != "ai-pro" || next["start_at"] != prev["end_at"] || next["currency"] != "USD" {
		t.Fatalf("change: %s", ch.raw)
	}
	again := e.must(200, "POST", "/v1/subscriptions/"+id+"/change-plan", admin, `{"plan_id":"ai-pro"}`, "Idempotency-Key", "change-1")
	if again.body["subscription"].(map[string]any)["id"] != nid {
		t.Fatalf("replayed change made another subscription: %s", again.raw)
	}
	if r := e.must(409, "POST", "/v1/subscriptions/"+id+"/cancel", admin, ""); func() string { c, _, _ := r.err(); return c }() != "subscription_replaced" {
		t.Fatalf("cancel of a replaced subscription: %s", r.raw)
	}
	if g := e.must(200, "GET", "/v1/subscriptions/"+id, admin, ""); g.body["status"] != "ended" {
		t.Fatalf("old subscription: %s", g.raw)
	}
	if b := e.must(200, "GET", "/v1/subscriptions/"+nid+"/balance", admin, ""); b.body["total"] != "0" {
		t.Fatalf("successor's account: %s", b.raw)
	}

	// Cancel at a date: still active until then; a past date is refused.
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	r = e.must(400, "POST", "/v1/subscriptions/"+nid+"/cancel", admin, `{"at":"`+past+`"}`)
	if _, field, _ := r.err(); field != "at" {
		t.Fatalf("past cancel: %s", r.raw)
	}
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339Nano)
	c := e.must(200, "POST", "/v1/subscriptions/"+nid+"/cancel", admin, `{"at":"`+later+`"}`)
	if c.body["status"] != "active" || c.body["end_at"] != later {
		t.Fatalf("cancel at a date: %s", c.raw)
	}
	// PATCH: withdraw the cancellation, then set it again.
	if p := e.must(200, "PATCH", "/v1/subscriptions/"+nid, admin, `{"end_at":null}`); p.body["end_at"] != nil || p.body["status"] != "active" {
		t.Fatalf("withdrawn cancellation: %s", p.raw)
	}
	if p := e.must(200, "PATCH", "/v1/subscriptions/"+nid, admin, `{"end_at":"`+later+`"}`); p.body["end_at"] != later {
		t.Fatalf("patched end: %s", p.raw)
	}
	if r := e.must(400, "PATCH", "/v1/subscriptions/"+nid, admin, `{}`); func() string { _, f, _ := r.err(); return f }() != "end_at" {
		t.Fatalf("patch without end_at: %s", r.raw)
	}
	// A subscription after that end is fine; one before it overlaps.
	after := strings.Replace(seedSub, `"schedule":{"start":"now"}`, `"schedule":{"start":"at","at":"`+later+`"}`, 1)
	if s := e.must(201, "POST", "/v1/subscriptions", admin, after, "Idempotency-Key", "create-3"); s.body["status"] != "scheduled" {
		t.Fatalf("scheduled: %s", s.raw)
	}
	// Withdrawing the cancellation now would overlap the scheduled one.
	if r := e.must(409, "PATCH", "/v1/subscriptions/"+nid, admin, `{"end_at":null}`); func() string { c, _, _ := r.err(); return c }() != "subscription_overlap" {
		t.Fatalf("reopen over a scheduled subscription: %s", r.raw)
	}
	// Cancel now ends it.
	if c := e.must(200, "POST", "/v1/subscriptions/"+nid+"/cancel", admin, ""); c.body["status"] != "ended" {
		t.Fatalf("cancel now: %s", c.raw)
	}
	if r := e.must(409, "POST", "/v1/subscriptions/"+nid+"/cancel", admin, ""); func() string { c, _, _ := r.err(); return c }() != "subscription_ended" {
		t.Fatalf("cancel twice: %s", r.raw)
	}
	if r := e.must(409, "POST", "/v1/subscriptions/"+nid+"/topups", admin, `{"amount":"300"}`, "Idempotency-Key", "t-ended"); func() string { c, _, _ := r.err(); return c }() != "subscription_ended" {
		t.Fatalf("top-up of an ended subscription: %s", r.raw)
	}

	// Back-dating (a migration): a start in the past is accepted.
	back := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	bs := strings.NewReplacer(`"customer_id":"acme"`, `"customer_id":"globex"`, `"schedule":{"start":"now"}`, `"schedule":{"start":"at","at":"`+back+`"}`).Replace(seedSub)
	if s := e.must(201, "POST", "/v1/subscriptions", admin, bs, "Idempotency-Key", "create-globex"); s.body["status"] != "active" {
		t.Fatalf("back-dated: %s", s.raw)
	}
	// A bad on_end is refused, naming the field.
	bad := strings.Replace(proPlanJSON, `"expire"`, `"keep"`, 1)
	bad = strings.Replace(bad, `"ai-pro"`, `"ai-pro-2"`, 1)
	r = e.must(400, "POST", "/v1/plans", admin, bad)
	if _, field, _ := r.err(); field != "prepaid.on_end.remaining_credits" {
		t.Fatalf("bad on_end: %s", r.raw)
	}
}
