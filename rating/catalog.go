// Package rating is creditmeter's catalog model and rating: credit currencies,
// features and their meters, prepaid plans, customers and subscriptions; their
// validation and the subscription preview; and the Rater, which turns a usage
// event into rated lines through per-subscription conversion tables compiled
// in memory.
//
// Rounding rule: credits = quantity × credits-per-unit, rounded half away from
// zero to 6 decimal places (credit.RoundDecimal); money = credits × credit
// value, rounded half away from zero to 9 decimal places (Money). Inputs are
// exact decimals; nothing is ever a float.
//
// The package does no I/O; rating/catalogstore persists the catalog in Redis.
package rating

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// CreditCurrency is a custom credit unit, e.g. AI Tokens (AIT).
type CreditCurrency struct {
	Code   string `json:"code"` // the id, e.g. "AIT"
	Name   string `json:"name"`
	Symbol string `json:"symbol,omitempty"`
}

// MeterKind says how a meter learns usage.
type MeterKind string

// Meter kinds. Only event-based meters can be mapped to credit consumption.
const (
	MeterEventBased    MeterKind = "event_based"
	MeterPreAggregated MeterKind = "pre_aggregated" // usage reported as totals
)

// Aggregation of an event-based meter.
type Aggregation string

// Aggregations. COUNT, SUM and UNIQUE_COUNT are billable (a plan may map
// them to credits); MAX, LATEST and AVG are reporting meters, read from the
// archive only.
const (
	AggCount       Aggregation = "COUNT"        // each matching event is one unit
	AggSum         Aggregation = "SUM"          // the value of Meter.Dimension
	AggUniqueCount Aggregation = "UNIQUE_COUNT" // 1 the first time a value of Meter.Dimension appears in a billing period
	AggMax         Aggregation = "MAX"          // reporting: the largest value of Meter.Dimension
	AggLatest      Aggregation = "LATEST"       // reporting: the value of the latest event
	AggAvg         Aggregation = "AVG"          // reporting: the mean value
)

// Reporting reports whether a is a reporting-only aggregation, which credit
// consumption cannot map.
func (a Aggregation) Reporting() bool { return a == AggMax || a == AggLatest || a == AggAvg }

// Billable reports whether a plan may map a meter to credits.
func (m *Meter) Billable() bool { return m.Kind == MeterEventBased && !m.Aggregation.Reporting() }

// Feature is something a customer uses, measured by a meter.
type Feature struct {
	ID    string `json:"id"` // e.g. "ai-agent-email"
	Name  string `json:"name"`
	Meter Meter  `json:"meter"`
}

// Meter measures a feature. An event-based meter matches events by name and
// by dimension filters (all must match) and aggregates them (Aggregation).
type Meter struct {
	Kind        MeterKind   `json:"kind"`
	EventName   string      `json:"event_name,omitempty"`
	Aggregation Aggregation `json:"aggregation,omitempty"`
	Dimension   string      `json:"dimension,omitempty"` // every aggregation but COUNT
	Filters     []DimFilter `json:"filters,omitempty"`
}

// FilterOp is how a DimFilter tests its dimension.
type FilterOp string

// Filter operators. A value is a string, or the text of a number: "2" matches
// 2 and 2.0.
const (
	FilterEq     FilterOp = "eq"     // the dimension equals Value (the default: "" is eq)
	FilterIn     FilterOp = "in"     // the dimension equals one of Values
	FilterNotIn  FilterOp = "not_in" // the dimension is absent or equals none of Values
	FilterExists FilterOp = "exists" // the dimension is present, whatever its value
)

// MaxFilterValues bounds the Values of an in or not_in filter.
const MaxFilterValues = 100

// DimFilter tests the event's dimension Key.
type DimFilter struct {
	Key    string   `json:"key"`
	Op     FilterOp `json:"op,omitempty"`
	Value  string   `json:"value,omitempty"`  // eq
	Values []string `json:"values,omitempty"` // in, not_in
}

// PlanType of a plan.
type PlanType string

// Plan types.
const (
	PlanFree PlanType = "free"
	PlanPaid PlanType = "paid"
)

// BillingModel of a plan; only paid plans may be prepaid.
type BillingModel string

// Billing models.
const (
	BillingPrepaid  BillingModel = "prepaid"
	BillingPostpaid BillingModel = "postpaid"
)

// Plan is a product's price plan.
type Plan struct {
	ID           string         `json:"id"`
	Product      string         `json:"product"`
	Name         string         `json:"name"`
	Type         PlanType       `json:"type"`
	BillingModel BillingModel   `json:"billing_model"`
	Prepaid      *PrepaidConfig `json:"prepaid,omitempty"` // required iff prepaid
}

// TopUpModelType prices a top-up. Only flat_rate exists; tiered and volume
// would add tiers to TopUpModel without changing its callers.
type TopUpModelType string

// Top-up model types.
const (
	TopUpFlatRate TopUpModelType = "flat_rate" // every credit costs the currency value
)

// TopUpModel prices purchases of credits.
type TopUpModel struct {
	Type TopUpModelType `json:"type"`
}

// Price is the money value of one credit in one currency (ISO 4217).
type Price struct {
	Currency string          `json:"currency"`
	Value    decimal.Decimal `json:"value"`
}

// PrepaidConfig is a prepaid plan's credit configuration.
type PrepaidConfig struct {
	CreditCurrency string            `json:"credit_currency"`
	TopUp          TopUpModel        `json:"top_up_model"`
	CurrencyValues []Price           `json:"currency_values"`
	MinPurchase    *credit.Amount    `json:"min_purchase,omitempty"`
	MaxPurchase    *credit.Amount    `json:"max_purchase,omitempty"`
	Consumption    []ConsumptionRate `json:"consumption"`
	LowBalance     LowBalance        `json:"low_balance"`
	Overage        OveragePolicy     `json:"overage_policy"`
	// DebtLimit caps overage debt (overage policy only): usage beyond it is
	// unfunded and /check refuses it. Nil: no limit.
	DebtLimit *credit.Amount `json:"debt_limit,omitempty"`
	// PurchaseLimit caps a subscription's purchases per calendar month.
	PurchaseLimit *PurchaseLimit `json:"purchase_limit,omitempty"`
	// Payment says whether a top-up waits for payment confirmation.
	Payment *PaymentTerms `json:"payment,omitempty"`
	// AutoRecharge is the plan's default automatic recharge.
	AutoRecharge *AutoRecharge `json:"auto_recharge,omitempty"`
	// OnEnd says what becomes of a subscription's remaining credits when it
	// ends or changes plan; nil is the default EndPolicy.
	OnEnd *EndPolicy `json:"on_end,omitempty"`
}

// AutoRecharge: when a subscription's available balance falls below
// Threshold, buy Amount credits (a top-up, within the plan's bounds).
type AutoRecharge struct {
	Threshold credit.Amount `json:"threshold"`
	Amount    credit.Amount `json:"amount"`
}

// PurchaseLimit caps what a subscription buys per calendar month (UTC),
// pending top-ups included: credits, and/or money charged in the
// subscription's currency.
type PurchaseLimit struct {
	Credits *credit.Amount   `json:"credits,omitempty"`
	Charge  *decimal.Decimal `json:"charge,omitempty"`
}

// PaymentTerms: with ConfirmationRequired a top-up is created pending and
// becomes credits when its payment is confirmed, or expires after
// ExpiresIn (a Go duration, default 24h).
type PaymentTerms struct {
	ConfirmationRequired bool   `json:"confirmation_required"`
	ExpiresIn            string `json:"expires_in,omitempty"`
}

// DefaultPaymentExpiry is how long a pending top-up waits by default.
const DefaultPaymentExpiry = 24 * time.Hour

// PaymentExpiry is how long a pending top-up waits for its payment.
func (p *PaymentTerms) PaymentExpiry() time.Duration {
	if p == nil || p.ExpiresIn == "" {
		return DefaultPaymentExpiry
	}
	d, err := time.ParseDuration(p.ExpiresIn)
	if err != nil || d <= 0 {
		return DefaultPaymentExpiry
	}
	return d
}

// RemainingCredits is what becomes of a subscription's remaining grants when
// it ends.
type RemainingCredits string

// Remaining-credits policies.
const (
	// CarryOver moves each remaining grant to the successor of a plan change,
	// keeping its type and expiry; without a successor it is Expire.
	CarryOver RemainingCredits = "carry_over"
	// Expire records the remainders as breakage.
	Expire RemainingCredits = "expire"
)

// EndPolicy is a plan's choice for remaining credits at a subscription's end
// (the default: carry over, no refund).
type EndPolicy struct {
	Remaining RemainingCredits `json:"remaining_credits,omitempty"`
	// RefundPurchased refunds purchased credits that would expire, at their
	// cost basis, as a ledger entry (promotional ones expire).
	RefundPurchased bool `json:"refund_purchased,omitempty"`
}

// EndPolicy is the plan's end policy with defaults filled.
func (p *PrepaidConfig) EndPolicy() EndPolicy {
	e := EndPolicy{Remaining: CarryOver}
	if p != nil && p.OnEnd != nil {
		e = *p.OnEnd
		if e.Remaining == "" {
			e.Remaining = CarryOver
		}
	}
	return e
}

// ConsumptionRate maps one unit of a feature to credits ("1 email = 1 AIT").
type ConsumptionRate struct {
	FeatureID      string        `json:"feature_id"`
	CreditsPerUnit credit.Amount `json:"credits_per_unit"`
}

// LowBalance is the alerting threshold: absolute credits and/or a percent of
// the last grant. Either may be absent.
type LowBalance struct {
	Credits *credit.Amount   `json:"credits,omitempty"`
	Percent *decimal.Decimal `json:"percent,omitempty"`
}

// OveragePolicy says what happens to usage beyond the balance; usage is always
// recorded (defined once, in credit).
type OveragePolicy = credit.OveragePolicy

// Overage policies.
const (
	OverageAllow    = credit.Overage  // the balance goes negative
	OverageUnfunded = credit.Unfunded // the shortfall is recorded as unfunded usage
)

// Address is a billing address.
type Address struct {
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	Region     string `json:"region,omitempty"`
	PostalCode string `json:"postal_code,omitempty"`
	Country    string `json:"country"` // ISO 3166-1 alpha-2
}

// Customer is who subscribes and pays.
type Customer struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	Email           string   `json:"email,omitempty"`
	BillingProvider string   `json:"billing_provider,omitempty"`
	Address         *Address `json:"address,omitempty"`
	PaymentMethod   string   `json:"payment_method,omitempty"` // a reference, e.g. "card **** 4242 exp 12/2034"
}

// GrantType of a credit grant (defined once, in credit).
type GrantType = credit.GrantType

// Grant types of included credits.
const (
	GrantPurchased   = credit.Purchased
	GrantPromotional = credit.Promotional
)

// ExpirationRule of included credits.
type ExpirationRule string

// Expiration rules.
const (
	ExpireNever              ExpirationRule = "never"
	ExpireAfterDuration      ExpirationRule = "duration"
	ExpireAtDate             ExpirationRule = "date"
	ExpireEndOfBillingPeriod ExpirationRule = "end_of_billing_period"
)

// Expiration says when included credits expire.
type Expiration struct {
	Rule     ExpirationRule `json:"rule"`
	Duration string         `json:"duration,omitempty"` // ISO 8601 "P30D", "P2W", "P1M", "P1Y"
	Date     *time.Time     `json:"date,omitempty"`
}

// IncludedCredits are granted when the subscription starts.
type IncludedCredits struct {
	Enabled    bool          `json:"enabled"`
	GrantType  GrantType     `json:"grant_type,omitempty"`
	Amount     credit.Amount `json:"amount"`
	Expiration Expiration    `json:"expiration"`
}

// StartMode of a subscription's schedule.
type StartMode string

// Start modes.
const (
	StartNow StartMode = "now"
	StartAt  StartMode = "at"
)

// Schedule says when a subscription begins.
type Schedule struct {
	Start StartMode  `json:"start"`
	At    *time.Time `json:"at,omitempty"`
}

// BillingPeriod of a subscription.
type BillingPeriod string

// Billing periods.
const (
	PeriodMonth BillingPeriod = "month"
	PeriodYear  BillingPeriod = "year"
)

// Billing is a subscription's billing section; empty fields default to the
// customer's.
type Billing struct {
	Provider      string        `json:"provider,omitempty"`
	Address       *Address      `json:"address,omitempty"`
	PaymentMethod string        `json:"payment_method,omitempty"`
	Period        BillingPeriod `json:"period,omitempty"`
}

// Subscription is a customer's subscription to a plan.
type Subscription struct {
	ID          string           `json:"id"`
	CustomerID  string           `json:"customer_id"`
	Product     string           `json:"product,omitempty"`
	PlanID      string           `json:"plan_id"`
	Currency    string           `json:"currency"`               // price localization, ISO 4217
	CreditValue *decimal.Decimal `json:"credit_value,omitempty"` // override of the plan's value in Currency
	Included    IncludedCredits  `json:"included_credits"`
	// Consumption overrides the plan's rows by feature and may add features.
	Consumption []ConsumptionRate `json:"consumption,omitempty"`
	Schedule    Schedule          `json:"schedule"`
	Billing     Billing           `json:"billing"`
	// EndAt is when the subscription ends (exclusive): events at or after it
	// are dead-lettered subscription_ended. Nil: it runs until cancelled.
	EndAt *time.Time `json:"end_at,omitempty"`
	// Set by Prepare: the start instant and creation time.
	StartAt   time.Time `json:"start_at"`
	CreatedAt time.Time `json:"created_at"`

	// DebtLimit overrides the plan's limit on overage debt (spend control).
	DebtLimit *credit.Amount `json:"debt_limit,omitempty"`
	// Replaces and ReplacedBy link the two sides of a plan change; set by
	// the server.
	Replaces   string `json:"replaces,omitempty"`
	ReplacedBy string `json:"replaced_by,omitempty"`
	// Status is computed when read (StatusAt), never stored.
	Status SubscriptionStatus `json:"status,omitempty"`
}

// SubscriptionStatus is where a subscription is in its life.
type SubscriptionStatus string

// Subscription statuses.
const (
	StatusScheduled SubscriptionStatus = "scheduled" // before its start
	StatusActive    SubscriptionStatus = "active"    // started, not ended
	StatusEnded     SubscriptionStatus = "ended"     // at or after its end
)

// StatusAt is the subscription's status at t.
func (s *Subscription) StatusAt(t time.Time) SubscriptionStatus {
	switch {
	case s.EndAt != nil && !t.Before(*s.EndAt):
		return StatusEnded
	case t.Before(s.StartAt):
		return StatusScheduled
	}
	return StatusActive
}

// Overlaps reports whether s and o are both active at some instant.
func (s *Subscription) Overlaps(o *Subscription) bool {
	return (o.EndAt == nil || s.StartAt.Before(*o.EndAt)) && (s.EndAt == nil || o.StartAt.Before(*s.EndAt))
}

// Lookup finds catalog entries by id; validation of references uses it.
type Lookup interface {
	Currency(code string) (*CreditCurrency, bool)
	Feature(id string) (*Feature, bool)
	Plan(id string) (*Plan, bool)
	Customer(id string) (*Customer, bool)
}

// Catalog is a snapshot of the whole catalog. It implements Lookup.
type Catalog struct {
	Currencies    map[string]*CreditCurrency
	Features      map[string]*Feature
	Plans         map[string]*Plan
	Customers     map[string]*Customer
	Subscriptions map[string]*Subscription
}

// NewCatalog is an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{
		Currencies:    map[string]*CreditCurrency{},
		Features:      map[string]*Feature{},
		Plans:         map[string]*Plan{},
		Customers:     map[string]*Customer{},
		Subscriptions: map[string]*Subscription{},
	}
}

// Currency implements Lookup.
func (c *Catalog) Currency(code string) (*CreditCurrency, bool) {
	v, ok := c.Currencies[code]
	return v, ok
}

// Feature implements Lookup.
func (c *Catalog) Feature(id string) (*Feature, bool) { v, ok := c.Features[id]; return v, ok }

// Plan implements Lookup.
func (c *Catalog) Plan(id string) (*Plan, bool) { v, ok := c.Plans[id]; return v, ok }

// Customer implements Lookup.
func (c *Catalog) Customer(id string) (*Customer, bool) { v, ok := c.Customers[id]; return v, ok }

// PriceIn is the plan's credit value in currency.
func (p *PrepaidConfig) PriceIn(currency string) (decimal.Decimal, bool) {
	for _, pr := range p.CurrencyValues {
		if pr.Currency == currency {
			return pr.Value, true
		}
	}
	return decimal.Decimal{}, false
}

// CheckPurchase applies the min/max purchase rules to a top-up of amount.
func (p *PrepaidConfig) CheckPurchase(amount credit.Amount) error {
	switch {
	case amount <= 0:
		return &FieldError{Field: "amount", Code: "invalid", Message: "a purchase must be positive", Err: ErrInvalid}
	case p.MinPurchase != nil && amount < *p.MinPurchase:
		return &FieldError{Field: "amount", Code: "below_minimum", Message: "a purchase must be at least " + p.MinPurchase.String() + " credits", Err: ErrInvalid}
	case p.MaxPurchase != nil && amount > *p.MaxPurchase:
		return &FieldError{Field: "amount", Code: "above_maximum", Message: "a purchase must be at most " + p.MaxPurchase.String() + " credits", Err: ErrInvalid}
	}
	return nil
}
