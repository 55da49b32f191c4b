package api_test

import (
	"strings"
	"testing"
)

const (
	tokensJSON   = `{"id":"llm-tokens","name":"LLM tokens","meter":{"kind":"event_based","event_name":"llm.call","aggregation":"SUM","dimension":"tokens","filters":[{"key":"model","value":"large"}]}}`
	overPlanJSON = `{"id":"ai-overage","product":"ai-agents","name":"AI Agents Overage","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"1.00"}],
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"},{"feature_id":"llm-tokens","credits_per_unit":"0.001"}],
	    "overage_policy":"overage","debt_limit":"20"}}`
	overSubJSON = `{"id":"sub-over","customer_id":"acme","plan_id":"ai-overage","currency":"USD","credit_value":"0.04",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"100","expiration":{"rule":"never"}}}`
)

// TestSpendControlCheck: /check prices a feature and quantity, or an event,
// with the subscription's conversion table, and refuses beyond the
// available credits plus the plan's (or the subscription's) debt limit.
func TestSpendControlCheck(t *testing.T) {
	e, _, _ := newBalanceEnv(t)
	e.seed()
	e.must(201, "POST", "/v1/features", admin, tokensJSON)
	r := e.must(400, "POST", "/v1/plans", admin, strings.Replace(overPlanJSON, `"overage_policy":"overage"`, `"overage_policy":"unfunded"`, 1))
	if code, f, _ := r.err(); code != "invalid" || f != "prepaid.debt_limit" {
		t.Fatalf("debt limit under unfunded: %s", r.raw)
	}
	r = e.must(400, "POST", "/v1/plans", admin, strings.Replace(overPlanJSON, `"debt_limit":"20"`, `"debt_limit":"-1"`, 1))
	if _, f, _ := r.err(); f != "prepaid.debt_limit" {
		t.Fatalf("negative debt limit: %s", r.raw)
	}
	e.must(201, "POST", "/v1/plans", admin, overPlanJSON)
	if pv := e.must(200, "POST", "/v1/subscriptions/preview", admin, overSubJSON); pv.body["debt_limit"] != "20" {
		t.Fatalf("preview's debt limit: %s", pv.raw)
	}
	e.must(201, "POST", "/v1/subscriptions", admin, overSubJSON, "Idempotency-Key", "over-1")
	base := "/v1/subscriptions/sub-over/check"
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	other := e.must(201, "POST", "/v1/customers/globex/tokens", admin, "").body["token"].(string)

	ck := e.must(200, "POST", base, tok, `{"feature":"ai-agent-email","quantity":"3"}`)
	cost, _ := ck.body["cost"].(map[string]any)
	if ck.body["credits"] != "3" || ck.body["allowed"] != true || ck.body["available"] != "100" || ck.body["spendable"] != "120" ||
		ck.body["debt_limit"] != "20" || ck.body["policy"] != "overage" || cost["amount"] != "0.12" || cost["currency"] != "USD" {
		t.Fatalf("3 emails: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base, tok, `{"feature":"llm-tokens","quantity":1500,"dimensions":{"model":"large"}}`); ck.body["credits"] != "1.5" {
		t.Fatalf("1500 tokens: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base, tok, `{"event_name":"llm.call","dimensions":{"model":"large","tokens":2000},"quantity":"3"}`); ck.body["credits"] != "6" || ck.body["cost"].(map[string]any)["amount"] != "0.24" {
		t.Fatalf("3 llm calls of 2000 tokens: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base, tok, `{"event_name":"llm.call","dimensions":{"model":"small","tokens":2000}}`); ck.body["credits"] != "0" || ck.body["allowed"] != true {
		t.Fatalf("an event no meter charges: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base, tok, `{"feature":"ai-agent-email","quantity":"120"}`); ck.body["allowed"] != true {
		t.Fatalf("120 emails within 100 + debt limit 20: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base, tok, `{"feature":"ai-agent-email","quantity":"121"}`); ck.body["allowed"] != false {
		t.Fatalf("121 emails beyond the debt limit: %s", ck.raw)
	}
	if ck = e.must(200, "POST", base, tok, `{"amount":"120.000001"}`); ck.body["allowed"] != false || ck.body["credits"] != "120.000001" {
		t.Fatalf("amount beyond the debt limit: %s", ck.raw)
	}
	e.must(404, "POST", base, other, `{"feature":"ai-agent-email","quantity":"1"}`)
	if b := e.must(200, "GET", "/v1/subscriptions/sub-over/balance", tok, ""); b.body["debt_limit"] != "20" {
		t.Fatalf("balance's debt limit: %s", b.raw)
	}

	for _, tc := range []struct {
		body        string
		status      int
		code, field string
	}{
		{`{}`, 400, "required", "amount"},
		{`{"amount":"1","feature":"ai-agent-email"}`, 400, "invalid", "amount"},
		{`{"amount":"1","quantity":"2"}`, 400, "invalid", "quantity"},
		{`{"feature":"ai-agent-email","quantity":"0.5"}`, 400, "invalid", "quantity"},
		{`{"feature":"ai-agent-email","quantity":"-1"}`, 400, "invalid", "quantity"},
		{`{"feature":"ai-agent-email","quantity":"lots"}`, 400, "invalid", "quantity"},
		{`{"feature":"storage","quantity":"1"}`, 422, "not_rated", "feature"},
		{`{"feature":"llm-tokens","quantity":"5","dimensions":{"model":"small"}}`, 422, "filter_mismatch", "dimensions"},
		{`{"event_name":"llm.call","dimensions":{"model":"large"}}`, 422, "unratable", "dimensions"},
		{`{"feature":"llm-tokens","quantity":"1","dimensions":{"model":true}}`, 400, "invalid", "dimensions.model"},
	} {
		r := e.must(tc.status, "POST", base, tok, tc.body)
		if code, f, _ := r.err(); code != tc.code || f != tc.field {
			t.Errorf("%s: %s, want %s %s", tc.body, r.raw, tc.code, tc.field)
		}
	}

	// A plan change reaches the subscriptions' accounts.
	e.must(200, "PUT", "/v1/plans/ai-overage", admin, strings.Replace(overPlanJSON, `"debt_limit":"20"`, `"debt_limit":"5.5"`, 1))
	if ck = e.must(200, "POST", base, tok, `{"amount":"105.5"}`); ck.body["allowed"] != true || ck.body["spendable"] != "105.5" || ck.body["debt_limit"] != "5.5" {
		t.Fatalf("after the plan's limit went to 5.5: %s", ck.raw)
	}

	// The subscription's limit overrides the plan's.
	e.must(201, "POST", "/v1/subscriptions", admin, strings.NewReplacer("sub-over", "sub-strict", `"customer_id":"acme"`, `"customer_id":"globex"`, `"currency":"USD"`, `"currency":"USD","debt_limit":"0"`).Replace(overSubJSON), "Idempotency-Key", "strict-1")
	if s := e.must(200, "GET", "/v1/subscriptions/sub-strict", admin, ""); s.body["debt_limit"] != "0" {
		t.Fatalf("subscription's debt limit: %s", s.raw)
	}
	if ck = e.must(200, "POST", "/v1/subscriptions/sub-strict/check", admin, `{"amount":"100.000001"}`); ck.body["allowed"] != false || ck.body["spendable"] != "100" || ck.body["debt_limit"] != "0" {
		t.Fatalf("limit 0: %s", ck.raw)
	}
	// Without a limit (the seed's unfunded plan) the answer is what it was.
	// (another customer: one active subscription per customer)
	e.must(201, "POST", "/v1/customers", admin, `{"id":"initech","name":"Initech"}`)
	sub := e.must(201, "POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"customer_id":"acme"`, `"customer_id":"initech"`, 1), "Idempotency-Key", "seed-1").body["id"].(string)
	if ck = e.must(200, "POST", "/v1/subscriptions/"+sub+"/check", admin, `{"amount":"100"}`); ck.body["allowed"] != true || ck.body["spendable"] != "100" || ck.body["debt_limit"] != nil {
		t.Fatalf("no limit: %s", ck.raw)
	}
}
