package console_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
)

// A plan's purchase limit, payment confirmation, auto-recharge and end
// rule are shown in its form, kept by Save changes (a PUT of the whole
// plan) and editable there.
func TestConsolePlanFormKeepsPaymentAndRechargeTerms(t *testing.T) {
	s := newStack(t)
	s.call(t, "POST", "/v1/currencies", `{"code":"AIT","name":"AI Tokens"}`, 201)
	s.call(t, "POST", "/v1/features", `{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`, 201)
	s.call(t, "POST", "/v1/plans", `{"id":"terms","product":"ai-agents","name":"Terms","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"0.04"}],
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],"overage_policy":"unfunded",
	    "purchase_limit":{"credits":"1000","charge":"40.00"},"payment":{"confirmation_required":true,"expires_in":"2h"},
	    "auto_recharge":{"threshold":"50","amount":"300"},"on_end":{"remaining_credits":"expire","refund_purchased":true}}}`, 201)
	b := newBrowser(t)
	b.open(s.url + "/console/")
	b.waitText("h1", "Sign in")
	b.fill("login-token", admin)
	b.click(`#login-form button[type=submit]`)
	b.waitText("h1", "Plans")
	b.open(s.url + "/console/#/plans/terms")
	b.waitText("h1", "Plan Terms")
	for id, want := range map[string]string{"plan-limit-credits": "1000", "plan-limit-charge": "40", "plan-payment-expires": "2h",
		"plan-ar-threshold": "50", "plan-ar-amount": "300", "plan-on-end": "expire"} {
		if got := b.value(id); got != want {
			t.Errorf("#%s shows %q, want %q", id, got, want)
		}
	}
	if !b.exists("#plan-payment:checked") || !b.exists("#plan-refund:checked") {
		t.Errorf("payment confirmation ticked %v, refund ticked %v", b.exists("#plan-payment:checked"), b.exists("#plan-refund:checked"))
	}
	b.fill("plan-name", "Terms v2")
	b.fill("plan-limit-credits", "2000")
	b.click("#plan-save")
	b.waitText("#plan-saved", "Saved")
	pp, _ := s.call(t, "GET", "/v1/plans/terms", "", 200)["prepaid"].(map[string]any)
	got, _ := json.Marshal(map[string]any{"purchase_limit": pp["purchase_limit"], "payment": pp["payment"], "auto_recharge": pp["auto_recharge"], "on_end": pp["on_end"]})
	want := `{"auto_recharge":{"amount":"300","threshold":"50"},"on_end":{"refund_purchased":true,"remaining_credits":"expire"},"payment":{"confirmation_required":true,"expires_in":"2h"},"purchase_limit":{"charge":"40","credits":"2000"}}`
	if string(got) != want {
		t.Errorf("saved plan's terms\n %s\nwant\n %s", got, want)
	}
	// untick: the plan has none of them any more
	b.click("#plan-payment")
	b.fill("plan-limit-credits", "")
	b.fill("plan-limit-charge", "")
	b.fill("plan-ar-threshold", "")
	b.fill("plan-ar-amount", "")
	b.click("#plan-save")
	b.waitText("#plan-saved", "Saved")
	pp, _ = s.call(t, "GET", "/v1/plans/terms", "", 200)["prepaid"].(map[string]any)
	if pp["purchase_limit"] != nil || pp["auto_recharge"] != nil || (pp["payment"] != nil && pp["payment"].(map[string]any)["confirmation_required"] == true) {
		t.Errorf("cleared terms still saved: %v", pp)
	}
	b.noProblem()
}

// On a plan requiring payment confirmation the auto-recharge's pending
// top-up is shown with the auto-recharge and in Pending top-ups, where an
// admin confirms it.
func TestConsoleAutoRechargePendingTopUp(t *testing.T) {
	s := newStack(t)
	s.call(t, "POST", "/v1/currencies", `{"code":"AIT","name":"AI Tokens"}`, 201)
	s.call(t, "POST", "/v1/features", `{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`, 201)
	s.call(t, "POST", "/v1/plans", `{"id":"confirm","product":"ai-agents","name":"Confirm","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"0.04"}],
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],"overage_policy":"unfunded",
	    "payment":{"confirmation_required":true},"auto_recharge":{"threshold":"50","amount":"300"}}}`, 201)
	s.call(t, "POST", "/v1/customers", `{"id":"acme","name":"Acme"}`, 201)
	s.call(t, "POST", "/v1/subscriptions", `{"id":"sub-c","customer_id":"acme","product":"ai-agents","plan_id":"confirm","currency":"USD",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"100","expiration":{"rule":"never"}},"schedule":{"start":"now"}}`, 201)
	if _, err := s.acc.Adjust(t.Context(), balance.AdjustRequest{Key: "use", Subscription: "sub-c", Amount: -credit.Credits(60), Reason: "usage", Actor: "test"}, "acme"); err != nil {
		t.Fatal(err)
	}
	r := &accounts.Recharger{Accounts: s.acc,
		List: func(context.Context) ([]accounts.SubscriptionRef, error) {
			return []accounts.SubscriptionRef{{ID: "sub-c", Customer: "acme"}}, nil
		},
		Payment: func(context.Context, accounts.SubscriptionRef) (*rating.PaymentTerms, error) {
			return &rating.PaymentTerms{ConfirmationRequired: true}, nil
		}}
	if _, err := r.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	ar := s.call(t, "GET", "/v1/subscriptions/sub-c/auto-recharge", "", 200)
	last, _ := ar["last"].(map[string]any)
	id, _ := last["topup_id"].(string)
	if last["status"] != "pending" || id == "" {
		t.Fatalf("auto-recharge %v", ar)
	}
	// one more made elsewhere (not in this browser): listed too
	other, _, err := s.acc.CreatePending(t.Context(), balance.PendingRequest{Key: "elsewhere", Subscription: "sub-c", Amount: credit.Credits(250), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.open(s.url + "/console/")
	b.waitText("h1", "Sign in")
	b.fill("login-token", admin)
	b.click(`#login-form button[type=submit]`)
	b.waitText("h1", "Plans")
	b.open(s.url + "/console/#/subscriptions/sub-c")
	b.waitText(`#pending tr[data-topup="`+other.ID+`"]`, "pending")
	b.waitText("#ar-last", "pending")
	b.waitText("#ar-last", id+" waits for its payment")
	b.waitText(`#pending tr[data-topup="`+id+`"]`, "pending")
	b.click(`#pending tr[data-topup="` + id + `"] .confirm-topup`)
	b.waitText(`#pending tr[data-topup="`+id+`"]`, "confirmed")
	b.waitText("#bal-available", "340 AIT")
	if _, err := r.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.waitText("#ar-last", "done")
	b.noProblem()
}
