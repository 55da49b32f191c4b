package console_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/credit"
)

// TestConsoleLifecycleAndPayments: on the subscription page an admin
// cancels at a date and withdraws it, buys a top-up that waits for its
// payment and confirms it, saves an auto-recharge (a bad threshold refused
// next to its field) and sees a declined recharge's error, then the retry's
// top-up; changes the plan at a date, sees the API's 409 when
// cancelling the replaced subscription, and follows the link to the
// scheduled successor.
func TestConsoleLifecycleAndPayments(t *testing.T) {
	s := newStack(t)
	s.call(t, "POST", "/v1/currencies", aitJSON, 201)
	s.call(t, "POST", "/v1/features", emailJSON, 201)
	s.call(t, "POST", "/v1/plans", `{"id":"ai-paid","product":"ai-agents","name":"AI Paid","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"1.00"}],
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],"overage_policy":"unfunded",
	    "min_purchase":"100","max_purchase":"5000","payment":{"confirmation_required":true,"expires_in":"24h"}}}`, 201)
	s.call(t, "POST", "/v1/plans", `{"id":"ai-pro","product":"ai-agents","name":"AI Pro","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"0.80"}],
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],"overage_policy":"unfunded"}}`, 201)
	s.call(t, "POST", "/v1/customers", `{"id":"acme","name":"Acme Inc"}`, 201)
	sub := s.call(t, "POST", "/v1/subscriptions", `{"customer_id":"acme","product":"ai-agents","plan_id":"ai-paid","currency":"USD","credit_value":"0.04",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"100","expiration":{"rule":"never"}},"schedule":{"start":"now"}}`, 201)
	id, _ := sub["id"].(string)

	b := newBrowser(t)
	b.signIn(s.url, admin, "")
	b.open(s.url + "/console/#/subscriptions/" + id)
	b.waitText("#sub-status", "active")
	b.waitText("#sub-end", "not cancelled")

	// Cancel at a date, then withdraw it.
	end := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Minute)
	b.click("#cancel-later")
	b.fill("cancel-at", end.Format("2006-01-02T15:04"))
	b.click("#cancel-submit")
	b.waitText("#sub-end", end.Format("2006-01-02 15:04"))
	if got, _ := s.call(t, "GET", "/v1/subscriptions/"+id, "", 200)["end_at"].(string); !strings.HasPrefix(got, end.Format("2006-01-02T15:04")) {
		t.Errorf("end_at after Cancel: %q, want %s", got, end.Format(time.RFC3339))
	}
	b.screenshot("lifecycle-cancelled")
	b.click("#withdraw-cancel")
	b.waitText("#sub-end", "not cancelled")
	if got, ok := s.call(t, "GET", "/v1/subscriptions/"+id, "", 200)["end_at"]; ok {
		t.Errorf("end_at after Withdraw cancellation: %v, want none", got)
	}

	// A top-up on a plan with payment confirmation waits; Confirm grants it.
	b.fill("topup-amount", "500")
	b.click("#topup-submit")
	b.waitText("#topup-result", "Waiting for payment")
	row := b.waitText("#pending-body", "pending")
	if !strings.Contains(row, "20.00 USD") {
		t.Errorf("pending row %q: want the charge 20.00 USD", row)
	}
	b.waitText("#bal-available", "100 AIT") // no credits before the payment
	b.screenshot("lifecycle-pending")
	b.click("#pending-body .confirm-topup")
	b.waitText("#pending-body", "confirmed")
	b.waitText("#bal-available", "600 AIT")
	if b.exists("#pending-body .confirm-topup") {
		b.fail("a confirmed top-up still offers Confirm")
	}

	// Auto-recharge: a missing threshold refused next to its field, then saved.
	b.waitText("#ar-status", "off")
	b.click("#ar-enabled")
	b.fill("ar-threshold", "")
	b.fill("ar-amount", "300")
	b.click("#ar-save")
	b.waitText("#ar-threshold-error", "threshold")
	b.fill("ar-threshold", "50")
	b.click("#ar-save")
	b.waitText("#ar-status", "below 50 AIT, buy 300 AIT")
	b.waitText("#ar-source", "this subscription")
	ar := s.call(t, "GET", "/v1/subscriptions/"+id+"/auto-recharge", "", 200)
	if ar["enabled"] != true || ar["threshold"] != "50" || ar["amount"] != "300" || ar["source"] != "subscription" {
		t.Errorf("auto-recharge after Save: %v", ar)
	}

	// Below the threshold: a declined payment is shown as the last attempt
	// with its error, then the retry's top-up.
	b.fill("adj-amount", "-580")
	b.fill("adj-reason", "below the threshold")
	b.click("#adj-submit")
	b.waitText("#bal-available", "20 AIT")
	list := func(context.Context) ([]accounts.SubscriptionRef, error) {
		return []accounts.SubscriptionRef{{ID: id, Customer: "acme"}}, nil
	}
	declined := &accounts.Recharger{Accounts: s.acc, List: list, Backoff: []time.Duration{time.Millisecond},
		Pay: func(context.Context, string, string, credit.Amount) error { return errors.New("card declined") }}
	if _, err := declined.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.waitText("#ar-last", "failed · 1 attempt")
	b.waitText("#ar-last-error", "card declined")
	b.screenshot("lifecycle-recharge-failed")
	time.Sleep(5 * time.Millisecond)
	paid := &accounts.Recharger{Accounts: s.acc, List: list, Backoff: []time.Duration{time.Millisecond}}
	if _, err := paid.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.waitText("#ar-last", "done")
	b.waitText("#ar-last", "top-up ledger #")
	b.waitText("#bal-available", "320 AIT")
	if b.exists("#ar-last-error") {
		b.fail("the error is still shown after the recharge was made")
	}

	// Change plan tomorrow: the old subscription links its successor, and
	// cancelling it is the API's 409, shown on the form.
	at := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Minute)
	b.fill("change-plan", "ai-pro")
	b.fill("change-at", at.Format("2006-01-02T15:04"))
	b.click("#change-submit")
	next := b.waitNonEmpty("#sub-replaced-by")
	b.waitText("#sub-end", at.Format("2006-01-02 15:04"))
	if b.exists("#withdraw-cancel") {
		b.fail("Withdraw cancellation is offered on a replaced subscription")
	}
	b.click("#cancel-submit")
	if msg := b.waitText("#cancel-form .form-error", "changes plan to "+next); !strings.Contains(msg, "cancel or change") {
		t.Errorf("409 on cancel: %q", msg)
	}
	b.screenshot("lifecycle-replaced")
	b.click("#sub-replaced-by a")
	b.waitText("h1", next)
	b.waitText("#sub-status", "scheduled")
	b.waitText("#sub-replaces", id)
	b.noProblem()

	// The customer sees the status, the end, the pending top-ups and the
	// auto-recharge, without the admin's forms and Confirm.
	tok, _ := s.call(t, "POST", "/v1/customers/acme/tokens", "", 201)["token"].(string)
	b.signIn(s.url, tok, "acme")
	b.open(s.url + "/console/#/my/subscriptions/" + id)
	b.waitText("#sub-status", "active")
	b.waitText("#sub-replaced-by", next)
	b.waitText("#pending-body", "confirmed")
	b.waitText("#ar-status", "below 50 AIT, buy 300 AIT")
	for _, sel := range []string{"#cancel-form", "#change-form", "#ar-form", ".confirm-topup"} {
		if b.exists(sel) {
			b.fail("the customer's page has %s", sel)
		}
	}
	b.noProblem()
	if u := s.unroutedCalls(); len(u) > 0 {
		t.Errorf("the console called routes the API does not have: %v", u)
	}
}
