package api_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/rating"
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

// On a plan requiring payment confirmation the auto-recharge shows its
// crossing's pending top-up (status pending, topup_id), which an admin
// confirms like any pending top-up; then it is done.
func TestAutoRechargePendingTopUpThroughTheAPI(t *testing.T) {
	st := apptest.Stores(t)
	srv := api.NewServer(api.Options{Catalog: st.Catalog, Ledger: st.Accounts, Balances: st.Accounts, Reports: archive.Reports{Conn: st.Conn}, AdminTokens: []string{admin}})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}
	e.seed()
	plan := strings.Replace(strings.Replace(rechargePlan, `"id":"ai-recharge"`, `"id":"ai-recharge-pay"`, 1),
		`"overage_policy":"unfunded"`, `"overage_policy":"unfunded","payment":{"confirmation_required":true}`, 1)
	e.must(201, "POST", "/v1/plans", admin, plan)
	id := e.must(201, "POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"plan_id":"ai-prepaid"`, `"plan_id":"ai-recharge-pay"`, 1), "Idempotency-Key", "c").body["id"].(string)
	base := "/v1/subscriptions/" + id
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-60","reason":"usage"}`, "Idempotency-Key", "a")
	r := &accounts.Recharger{Accounts: st.Accounts,
		List: func(context.Context) ([]accounts.SubscriptionRef, error) {
			return []accounts.SubscriptionRef{{ID: id, Customer: "acme"}}, nil
		},
		Payment: func(ctx context.Context, s accounts.SubscriptionRef) (*rating.PaymentTerms, error) {
			sub, err := st.Catalog.Subscription(ctx, s.ID)
			if err != nil {
				return nil, err
			}
			p, err := st.Catalog.Plan(ctx, sub.PlanID)
			if err != nil {
				return nil, err
			}
			return p.Prepaid.Payment, nil
		}}
	if _, err := r.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	g := e.must(200, "GET", base+"/auto-recharge", admin, "")
	last, _ := g.body["last"].(map[string]any)
	tp, _ := last["topup_id"].(string)
	if last["status"] != "pending" || tp == "" {
		t.Fatalf("auto-recharge: %s", g.raw)
	}
	if b := e.must(200, "GET", base+"/balance", admin, ""); b.body["total"] != "40" {
		t.Fatalf("credits before the payment: %s", b.raw)
	}
	if p := e.must(200, "GET", base+"/topups/"+tp, admin, ""); p.body["status"] != "pending" || p.body["amount"] != "300" {
		t.Fatalf("the pending top-up: %s", p.raw)
	}
	if c := e.must(200, "POST", base+"/topups/"+tp+"/confirm", admin, ""); c.body["status"] != "confirmed" || c.body["balance"] != "340" {
		t.Fatalf("confirm: %s", c.raw)
	}
	if _, err := r.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if g := e.must(200, "GET", base+"/auto-recharge", admin, ""); g.body["last"].(map[string]any)["status"] != "done" {
		t.Fatalf("after the confirmation: %s", g.raw)
	}
}
