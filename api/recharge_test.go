package api_test

import (
	"strings"
	"testing"
)

// rechargePlan is the seed plan recharging 300 AIT below 50.
var rechargePlan = strings.Replace(strings.Replace(planJSON, `"id":"ai-prepaid"`, `"id":"ai-recharge"`, 1),
	`"overage_policy":"unfunded"`, `"overage_policy":"unfunded","auto_recharge":{"threshold":"50","amount":"300"}`, 1)

func TestAutoRechargeSettings(t *testing.T) {
	e, _, _ := newBalanceEnv(t)
	e.seed()
	e.must(201, "POST", "/v1/plans", admin, rechargePlan)
	id := e.must(201, "POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"plan_id":"ai-prepaid"`, `"plan_id":"ai-recharge"`, 1), "Idempotency-Key", "c").body["id"].(string)
	base := "/v1/subscriptions/" + id + "/auto-recharge"
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	if g := e.must(200, "GET", base, tok, ""); g.body["enabled"] != true || g.body["threshold"] != "50" || g.body["amount"] != "300" || g.body["source"] != "plan" || g.body["last"] != nil {
		t.Fatalf("the plan's: %s", g.raw)
	}
	if p := e.must(200, "PUT", base, admin, `{"enabled":true,"threshold":"20","amount":"1000"}`); p.body["threshold"] != "20" || p.body["amount"] != "1000" || p.body["source"] != "subscription" {
		t.Fatalf("override: %s", p.raw)
	}
	if p := e.must(200, "PUT", base, admin, `{"enabled":false}`); p.body["enabled"] != false || p.body["source"] != "subscription" {
		t.Fatalf("off: %s", p.raw)
	}
	if _, f, _ := e.must(422, "PUT", base, admin, `{"enabled":true,"threshold":"20","amount":"9000"}`).err(); f != "amount" {
		t.Fatalf("above the maximum purchase: field %q", f)
	}
	if _, f, _ := e.must(400, "PUT", base, admin, `{"enabled":true,"amount":"300"}`).err(); f != "threshold" {
		t.Fatalf("no threshold: field %q", f)
	}
	if r := e.do("PUT", base, tok, `{"enabled":false}`); r.status != 403 {
		t.Fatalf("a customer changed it: %d", r.status)
	}
	if d := e.must(200, "DELETE", base, admin, ""); d.body["source"] != "plan" || d.body["enabled"] != true {
		t.Fatalf("back to the plan's: %s", d.raw)
	}
	bad := strings.Replace(strings.Replace(rechargePlan, `"amount":"300"`, `"amount":"10"`, 1), `"id":"ai-recharge"`, `"id":"ai-bad"`, 1)
	if _, f, _ := e.must(400, "POST", "/v1/plans", admin, bad).err(); f != "prepaid.auto_recharge.amount" {
		t.Fatalf("a plan's recharge below its minimum: field %q", f)
	}
}
