package rating

import (
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// EffectiveRate is one row of a subscription's effective consumption table.
type EffectiveRate struct {
	FeatureID      string        `json:"feature_id"`
	FeatureName    string        `json:"feature_name"`
	EventName      string        `json:"event_name"`
	Aggregation    Aggregation   `json:"aggregation"`
	Dimension      string        `json:"dimension,omitempty"`
	CreditsPerUnit credit.Amount `json:"credits_per_unit"`
	Source         string        `json:"source"` // "plan" or "subscription"
}

// EffectiveRates merges the plan's consumption rows with the subscription's:
// a subscription row replaces the plan row of the same feature, other
// subscription rows are added. Sorted by feature id.
func EffectiveRates(s *Subscription, p *Plan, l Lookup) []EffectiveRate {
	byFeature := map[string]EffectiveRate{}
	add := func(rows []ConsumptionRate, source string) {
		for _, r := range rows {
			f, ok := l.Feature(r.FeatureID)
			if !ok {
				continue
			}
			byFeature[r.FeatureID] = EffectiveRate{
				FeatureID: f.ID, FeatureName: f.Name, EventName: f.Meter.EventName,
				Aggregation: f.Meter.Aggregation, Dimension: f.Meter.Dimension,
				CreditsPerUnit: r.CreditsPerUnit, Source: source,
			}
		}
	}
	if p.Prepaid != nil {
		add(p.Prepaid.Consumption, "plan")
	}
	add(s.Consumption, "subscription")
	out := make([]EffectiveRate, 0, len(byFeature))
	for _, r := range byFeature {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FeatureID < out[j].FeatureID })
	return out
}

// MoneyAmount is an exact sum of money.
type MoneyAmount struct {
	Amount   decimal.Decimal `json:"amount"`
	Currency string          `json:"currency"`
}

// minorUnits of the currencies whose minor unit is not the cent.
var minorUnits = map[string]int32{
	"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "UGX": 0, "XAF": 0, "XOF": 0, "PYG": 0,
	"BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "LYD": 3, "IQD": 3,
}

// MinorUnits is the number of decimal places of a currency's smallest unit.
func MinorUnits(currency string) int32 {
	if n, ok := minorUnits[currency]; ok {
		return n
	}
	return 2
}

// Charge is what buying amount credits at value costs, rounded half away from
// zero to the currency's minor unit.
func Charge(amount credit.Amount, value decimal.Decimal, currency string) MoneyAmount {
	return MoneyAmount{Amount: amount.Decimal().Mul(value).Round(MinorUnits(currency)), Currency: currency}
}

// IncludedPreview describes the included credits of a preview.
type IncludedPreview struct {
	GrantType      GrantType      `json:"grant_type"`
	Amount         credit.Amount  `json:"amount"`
	ExpirationRule ExpirationRule `json:"expiration_rule"`
	ExpiresAt      *time.Time     `json:"expires_at"`
}

// Preview is what creating a subscription would produce, computed without
// creating anything.
type Preview struct {
	CustomerID        string           `json:"customer_id"`
	Product           string           `json:"product"`
	PlanID            string           `json:"plan_id"`
	CreditCurrency    string           `json:"credit_currency"`
	Currency          string           `json:"currency"`
	CreditValue       decimal.Decimal  `json:"credit_value"`
	CreditValueSource string           `json:"credit_value_source"`
	Consumption       []EffectiveRate  `json:"consumption"`
	IncludedCredits   *IncludedPreview `json:"included_credits"`
	// ChargeNow is the money for purchased included credits: amount × credit
	// value; zero for promotional or no included credits.
	ChargeNow     MoneyAmount    `json:"charge_now"`
	StartAt       time.Time      `json:"start_at"`
	MinPurchase   *credit.Amount `json:"min_purchase,omitempty"`
	MaxPurchase   *credit.Amount `json:"max_purchase,omitempty"`
	OveragePolicy OveragePolicy  `json:"overage_policy"`
	Billing       Billing        `json:"billing"`

	DebtLimit *credit.Amount `json:"debt_limit,omitempty"` // the subscription's, else the plan's
}

// PreviewSubscription validates s (filling it as PrepareSubscription does) and
// computes its preview.
func PreviewSubscription(s *Subscription, l Lookup, now time.Time) (*Preview, error) {
	plan, err := PrepareSubscription(s, l, now)
	if err != nil {
		return nil, err
	}
	return BuildPreview(s, plan, l), nil
}

// BuildPreview computes the preview of a prepared subscription.
func BuildPreview(s *Subscription, plan *Plan, l Lookup) *Preview {
	value, source, _ := EffectiveCreditValue(s, plan)
	pc := plan.Prepaid
	pv := &Preview{
		CustomerID: s.CustomerID, Product: s.Product, PlanID: plan.ID,
		CreditCurrency: pc.CreditCurrency, Currency: s.Currency,
		CreditValue: value, CreditValueSource: source,
		Consumption: EffectiveRates(s, plan, l),
		ChargeNow:   MoneyAmount{Amount: decimal.Zero, Currency: s.Currency},
		StartAt:     s.StartAt, MinPurchase: pc.MinPurchase, MaxPurchase: pc.MaxPurchase,
		OveragePolicy: pc.Overage, Billing: s.Billing,
	}
	pv.DebtLimit = Terms(s, plan).DebtLimit
	if s.Included.Enabled {
		pv.IncludedCredits = &IncludedPreview{
			GrantType: s.Included.GrantType, Amount: s.Included.Amount,
			ExpirationRule: s.Included.Expiration.Rule, ExpiresAt: s.ExpiresAt(),
		}
		if s.Included.GrantType == GrantPurchased {
			pv.ChargeNow = Charge(s.Included.Amount, value, s.Currency)
		}
	}
	return pv
}

// Grant is a subscription's initial grant of included credits, handed to the
// balance ledger.
type Grant struct {
	SubscriptionID string        `json:"subscription_id"`
	CustomerID     string        `json:"customer_id"`
	CreditCurrency string        `json:"credit_currency"`
	Type           GrantType     `json:"type"`
	Amount         credit.Amount `json:"amount"`
	EffectiveAt    time.Time     `json:"effective_at"`
	ExpiresAt      *time.Time    `json:"expires_at"`
	// CostBasis is the money per credit paid; zero for promotional grants.
	CostBasis MoneyAmount `json:"cost_basis"`
	// Charge is the money recorded as charged: amount × cost basis.
	Charge MoneyAmount `json:"charge"`
}

// InitialGrant is the grant of a prepared subscription's included credits,
// false when it has none.
func InitialGrant(s *Subscription, plan *Plan) (Grant, bool) {
	if !s.Included.Enabled || plan.Prepaid == nil {
		return Grant{}, false
	}
	g := Grant{
		SubscriptionID: s.ID, CustomerID: s.CustomerID, CreditCurrency: plan.Prepaid.CreditCurrency,
		Type: s.Included.GrantType, Amount: s.Included.Amount,
		EffectiveAt: s.StartAt, ExpiresAt: s.ExpiresAt(),
		CostBasis: MoneyAmount{Amount: decimal.Zero, Currency: s.Currency},
		Charge:    MoneyAmount{Amount: decimal.Zero, Currency: s.Currency},
	}
	if g.Type == GrantPurchased {
		value, _, _ := EffectiveCreditValue(s, plan)
		g.CostBasis.Amount = value
		g.Charge = Charge(g.Amount, value, s.Currency)
	}
	return g, true
}

// AccountTerms are what the balance ledger needs of a subscription and its
// plan: overage policy, low-balance threshold, top-up limits, credit value.
type AccountTerms struct {
	SubscriptionID string           `json:"subscription_id"`
	CustomerID     string           `json:"customer_id"`
	CreditCurrency string           `json:"credit_currency"`
	Overage        OveragePolicy    `json:"overage_policy"`
	LowCredits     *credit.Amount   `json:"low_balance_credits,omitempty"`
	LowPercent     *decimal.Decimal `json:"low_balance_percent,omitempty"`
	MinPurchase    *credit.Amount   `json:"min_purchase,omitempty"`
	MaxPurchase    *credit.Amount   `json:"max_purchase,omitempty"`
	Currency       string           `json:"currency"`
	CreditValue    decimal.Decimal  `json:"credit_value"`
	DebtLimit      *credit.Amount   `json:"debt_limit,omitempty"` // the subscription's, else the plan's
	PurchaseLimit  *PurchaseLimit   `json:"purchase_limit,omitempty"`
	AutoRecharge   *AutoRecharge    `json:"auto_recharge,omitempty"`
}

// Terms are the account terms of a prepared subscription under plan.
func Terms(s *Subscription, plan *Plan) AccountTerms {
	value, _, _ := EffectiveCreditValue(s, plan)
	t := AccountTerms{SubscriptionID: s.ID, CustomerID: s.CustomerID, Currency: s.Currency, CreditValue: value}
	if pc := plan.Prepaid; pc != nil {
		t.CreditCurrency, t.Overage = pc.CreditCurrency, pc.Overage
		t.LowCredits, t.LowPercent = pc.LowBalance.Credits, pc.LowBalance.Percent
		t.MinPurchase, t.MaxPurchase = pc.MinPurchase, pc.MaxPurchase
		t.PurchaseLimit, t.AutoRecharge = pc.PurchaseLimit, pc.AutoRecharge
		t.DebtLimit = pc.DebtLimit
	}
	if s.DebtLimit != nil {
		t.DebtLimit = s.DebtLimit
	}
	return t
}
