// Package seed provisions the seed's catalog (AI Tokens, the AI-agent email
// feature, a prepaid plan) and subscriptions through the same stores the API
// uses. The demo, the end-to-end tests and the benchmarks share it.
package seed

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// Ledger opens subscriptions' balance accounts (accounts.Accounts).
type Ledger interface {
	OpenSubscription(ctx context.Context, terms rating.AccountTerms, grant *rating.Grant) error
}

// The seed's catalog, as the API would receive it.
const (
	CurrencyJSON = `{"code":"AIT","name":"AI Tokens","symbol":"AIT"}`
	EmailJSON    = `{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`
	TokensJSON   = `{"id":"ai-agent-tokens","name":"AI Agent Tokens","meter":{"kind":"event_based","event_name":"llm.call","aggregation":"SUM","dimension":"tokens"}}`
	// PlanJSON is the seed's plan: flat-rate top-ups, 1 AIT = 1.00 USD,
	// min 250 / max 8,000, 1 email = 1 AIT; plus 1,000 tokens = 1 AIT.
	PlanJSON = `{"id":"ai-prepaid","product":"ai-agents","name":"AI Agents Prepaid","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},
	    "currency_values":[{"currency":"USD","value":"1.00"},{"currency":"EUR","value":"0.95"}],
	    "min_purchase":"250","max_purchase":"8000",
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"},{"feature_id":"ai-agent-tokens","credits_per_unit":"0.001"}],
	    "low_balance":{"credits":"20"},"overage_policy":"%s"}}`
)

// Plans created by Catalog.
const (
	PlanUnfunded = "ai-prepaid"
	PlanOverage  = "ai-prepaid-overage"
)

// Catalog creates the currency, features and two plans (unfunded and
// overage policy). It is idempotent.
func Catalog(ctx context.Context, st *catalogstore.Store) error {
	var cur rating.CreditCurrency
	if err := json.Unmarshal([]byte(CurrencyJSON), &cur); err != nil {
		return err
	}
	if _, err := st.CreateCurrency(ctx, &cur); err != nil {
		return fmt.Errorf("seed currency: %w", err)
	}
	for _, fj := range []string{EmailJSON, TokensJSON} {
		var f rating.Feature
		if err := json.Unmarshal([]byte(fj), &f); err != nil {
			return err
		}
		if _, err := st.CreateFeature(ctx, &f); err != nil {
			return fmt.Errorf("seed feature %s: %w", f.ID, err)
		}
	}
	for id, policy := range map[string]string{PlanUnfunded: "unfunded", PlanOverage: "overage"} {
		var p rating.Plan
		if err := json.Unmarshal(fmt.Appendf(nil, PlanJSON, policy), &p); err != nil {
			return err
		}
		p.ID = id
		if _, err := st.CreatePlan(ctx, &p); err != nil {
			return fmt.Errorf("seed plan %s: %w", id, err)
		}
	}
	return nil
}

// Subscription describes one customer with one subscription.
type Subscription struct {
	Customer    string
	Plan        string // PlanUnfunded or PlanOverage
	Included    string // included credits, e.g. "100"; "" for none
	GrantType   string // promotional (default) or purchased
	CreditValue string // override in USD, e.g. "0.04"; "" for the plan's
}

// Subscribe creates the customer (if new) and its subscription, starting
// now, and opens its balance account with the included credits. It returns
// the subscription id, which is derived from the customer so that repeating
// the call is idempotent.
func Subscribe(ctx context.Context, st *catalogstore.Store, l Ledger, s Subscription) (string, error) {
	c := rating.Customer{ID: s.Customer, Name: s.Customer, BillingProvider: "Customers EMEA", PaymentMethod: "card **** 4242 exp 12/2034"}
	if _, err := st.CreateCustomer(ctx, &c); err != nil {
		return "", fmt.Errorf("seed customer %s: %w", s.Customer, err)
	}
	if s.GrantType == "" {
		s.GrantType = "promotional"
	}
	body := map[string]any{
		"id": "sub-" + s.Customer, "customer_id": s.Customer, "product": "ai-agents", "plan_id": s.Plan, "currency": "USD",
		"schedule": map[string]any{"start": "now"},
	}
	if s.CreditValue != "" {
		body["credit_value"] = s.CreditValue
	}
	if s.Included != "" {
		body["included_credits"] = map[string]any{"enabled": true, "grant_type": s.GrantType, "amount": s.Included, "expiration": map[string]any{"rule": "never"}}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	var sub rating.Subscription
	if err := json.Unmarshal(raw, &sub); err != nil {
		return "", err
	}
	res, err := st.CreateSubscription(ctx, &sub, "")
	if err != nil {
		return "", fmt.Errorf("seed subscription for %s: %w", s.Customer, err)
	}
	var grant *rating.Grant
	if g, has := rating.InitialGrant(res.Subscription, res.Plan); has {
		grant = &g
	}
	if err := l.OpenSubscription(ctx, rating.Terms(res.Subscription, res.Plan), grant); err != nil {
		return "", fmt.Errorf("seed account for %s: %w", s.Customer, err)
	}
	return res.Subscription.ID, nil
}
