package rating

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// Sentinel errors; every FieldError wraps one of them.
var (
	ErrInvalid     = errors.New("rating: invalid")           // a field's value is wrong
	ErrUnknownRef  = errors.New("rating: unknown reference") // an id names nothing
	ErrNotEventMtr = errors.New("rating: meter is not event-based")
)

// MsgOnlyEventBased is the message of mapping a non-event-based meter.
const MsgOnlyEventBased = "Only event-based meters are currently supported for credit consumption mapping"

// FieldError is a validation error naming the field at fault, as a JSON path
// of the request ("prepaid.consumption[0].feature_id").
type FieldError struct {
	Field   string
	Code    string // machine-readable: "required", "invalid", "unknown_reference", …
	Message string
	Err     error // a sentinel
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Code: "invalid", Message: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func required(field string) *FieldError {
	return &FieldError{Field: field, Code: "required", Message: field + " is required", Err: ErrInvalid}
}

func unknown(field, what, id string) *FieldError {
	return &FieldError{Field: field, Code: "unknown_reference", Message: fmt.Sprintf("no %s with id %q", what, id), Err: ErrUnknownRef}
}

var (
	idRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
	codeRe     = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,15}$`)
	countryRe  = regexp.MustCompile(`^[A-Z]{2}$`)
	durationRe = regexp.MustCompile(`^P([1-9][0-9]{0,3})([DWMY])$`)
)

// ValidID reports whether s may be an id: 1-128 of letters, digits, '.', '_',
// ':' and '-', starting with a letter or digit.
func ValidID(s string) bool { return idRe.MatchString(s) }

func checkID(field, v string) error {
	if v == "" {
		return required(field)
	}
	if !ValidID(v) {
		return invalid(field, "%s must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", field)
	}
	return nil
}

func checkName(field, v string) error {
	if v == "" {
		return required(field)
	}
	if len(v) > 200 {
		return invalid(field, "%s must be at most 200 characters", field)
	}
	return nil
}

// ValidCurrency reports whether s looks like an ISO 4217 code ("USD").
func ValidCurrency(s string) bool { return currencyRe.MatchString(s) }

// maxCreditValue bounds the money value of one credit; with 9 decimal places
// it keeps the compiled value in an int64 of nano-units.
var maxCreditValue = decimal.NewFromInt(1_000_000)

func checkMoneyValue(field string, v decimal.Decimal) error {
	switch {
	case !v.IsPositive():
		return invalid(field, "%s must be positive, got %s", field, v)
	case v.GreaterThan(maxCreditValue):
		return invalid(field, "%s must be at most 1000000, got %s", field, v)
	case v.Exponent() < -9 && !v.Equal(v.Round(9)):
		return invalid(field, "%s must have at most 9 decimal places, got %s", field, v)
	}
	return nil
}

// ValidateCurrency checks a credit currency.
func ValidateCurrency(c *CreditCurrency) error {
	if c.Code == "" {
		return required("code")
	}
	if !codeRe.MatchString(c.Code) {
		return invalid("code", "code must be 1-16 upper-case letters, digits or '_', starting with a letter, got %q", c.Code)
	}
	if err := checkName("name", c.Name); err != nil {
		return err
	}
	if len(c.Symbol) > 16 {
		return invalid("symbol", "symbol must be at most 16 characters")
	}
	return nil
}

// ValidateFeature checks a feature and its meter.
func ValidateFeature(f *Feature) error {
	if err := checkID("id", f.ID); err != nil {
		return err
	}
	if err := checkName("name", f.Name); err != nil {
		return err
	}
	m := f.Meter
	switch m.Kind {
	case "":
		return required("meter.kind")
	case MeterPreAggregated:
		if m.EventName != "" || m.Aggregation != "" || m.Dimension != "" || len(m.Filters) > 0 {
			return invalid("meter.kind", "a pre_aggregated meter has no event_name, aggregation, dimension or filters")
		}
		return nil
	case MeterEventBased:
	default:
		return invalid("meter.kind", "meter.kind must be event_based or pre_aggregated, got %q", m.Kind)
	}
	if m.EventName == "" {
		return required("meter.event_name")
	}
	if len(m.EventName) > 200 {
		return invalid("meter.event_name", "meter.event_name must be at most 200 characters")
	}
	switch m.Aggregation {
	case AggCount:
		if m.Dimension != "" {
			return invalid("meter.dimension", "a COUNT meter has no dimension")
		}
	case AggSum, AggUniqueCount, AggMax, AggLatest, AggAvg:
		if m.Dimension == "" {
			return &FieldError{Field: "meter.dimension", Code: "required", Message: "a " + string(m.Aggregation) + " meter needs the dimension it aggregates", Err: ErrInvalid}
		}
		if len(m.Dimension) > 200 {
			return invalid("meter.dimension", "meter.dimension must be at most 200 characters")
		}
	case "":
		return required("meter.aggregation")
	default:
		return invalid("meter.aggregation", "meter.aggregation must be COUNT, SUM, UNIQUE_COUNT, MAX, LATEST or AVG, got %q", m.Aggregation)
	}
	seen := map[string]bool{}
	for i, fl := range m.Filters {
		if err := validateFilter(fmt.Sprintf("meter.filters[%d]", i), fl); err != nil {
			return err
		}
		if seen[fl.Key] {
			return invalid(fmt.Sprintf("meter.filters[%d].key", i), "dimension %q is filtered twice", fl.Key)
		}
		seen[fl.Key] = true
	}
	return nil
}

func validateFilter(field string, fl DimFilter) error {
	if fl.Key == "" {
		return required(field + ".key")
	}
	switch fl.Op {
	case "", FilterEq:
		if len(fl.Values) > 0 {
			return invalid(field+".values", "an eq filter takes value, not values")
		}
	case FilterIn, FilterNotIn:
		if fl.Value != "" {
			return invalid(field+".value", "an %s filter takes values, not value", fl.Op)
		}
		if len(fl.Values) == 0 {
			return &FieldError{Field: field + ".values", Code: "required", Message: "an " + string(fl.Op) + " filter needs at least one value", Err: ErrInvalid}
		}
		if len(fl.Values) > MaxFilterValues {
			return invalid(field+".values", "a filter takes at most %d values, got %d", MaxFilterValues, len(fl.Values))
		}
		dup := map[string]bool{}
		for j, v := range fl.Values {
			if dup[v] {
				return invalid(fmt.Sprintf("%s.values[%d]", field, j), "value %q is listed twice", v)
			}
			dup[v] = true
		}
	case FilterExists:
		if fl.Value != "" || len(fl.Values) > 0 {
			return invalid(field+".op", "an exists filter takes no value or values")
		}
	default:
		return invalid(field+".op", "op must be eq, in, not_in or exists, got %q", fl.Op)
	}
	return nil
}

// ValidatePlan checks a plan and its references.
func ValidatePlan(p *Plan, l Lookup) error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	if err := checkID("product", p.Product); err != nil {
		return err
	}
	if err := checkName("name", p.Name); err != nil {
		return err
	}
	switch p.Type {
	case PlanFree, PlanPaid:
	case "":
		return required("type")
	default:
		return invalid("type", "type must be free or paid, got %q", p.Type)
	}
	switch p.BillingModel {
	case BillingPrepaid:
		if p.Type != PlanPaid {
			return invalid("billing_model", "only a paid plan may use billing model prepaid")
		}
		if p.Prepaid == nil {
			return required("prepaid")
		}
		return validatePrepaid(p.Prepaid, l)
	case BillingPostpaid:
		if p.Prepaid != nil {
			return invalid("prepaid", "prepaid configuration needs billing_model prepaid")
		}
		return nil
	case "":
		return required("billing_model")
	default:
		return invalid("billing_model", "billing_model must be prepaid or postpaid, got %q", p.BillingModel)
	}
}

func validatePrepaid(c *PrepaidConfig, l Lookup) error {
	if c.CreditCurrency == "" {
		return required("prepaid.credit_currency")
	}
	if _, ok := l.Currency(c.CreditCurrency); !ok {
		return unknown("prepaid.credit_currency", "credit currency", c.CreditCurrency)
	}
	switch c.TopUp.Type {
	case TopUpFlatRate:
	case "":
		return required("prepaid.top_up_model.type")
	default:
		return invalid("prepaid.top_up_model.type", "top-up model must be flat_rate, got %q", c.TopUp.Type)
	}
	if len(c.CurrencyValues) == 0 {
		return &FieldError{Field: "prepaid.currency_values", Code: "required", Message: "at least one currency value is required", Err: ErrInvalid}
	}
	seen := map[string]bool{}
	for i, pr := range c.CurrencyValues {
		field := fmt.Sprintf("prepaid.currency_values[%d]", i)
		if !ValidCurrency(pr.Currency) {
			return invalid(field+".currency", "currency must be an ISO 4217 code such as USD, got %q", pr.Currency)
		}
		if seen[pr.Currency] {
			return invalid(field+".currency", "currency %s is priced twice", pr.Currency)
		}
		seen[pr.Currency] = true
		if err := checkMoneyValue(field+".value", pr.Value); err != nil {
			return err
		}
	}
	if c.MinPurchase != nil && (*c.MinPurchase <= 0 || !c.MinPurchase.Valid()) {
		return invalid("prepaid.min_purchase", "min_purchase must be positive")
	}
	if c.MaxPurchase != nil && (*c.MaxPurchase <= 0 || !c.MaxPurchase.Valid()) {
		return invalid("prepaid.max_purchase", "max_purchase must be positive")
	}
	if c.MinPurchase != nil && c.MaxPurchase != nil && *c.MinPurchase > *c.MaxPurchase {
		return invalid("prepaid.min_purchase", "min_purchase (%s) must not exceed max_purchase (%s)", c.MinPurchase, c.MaxPurchase)
	}
	if pl := c.PurchaseLimit; pl != nil {
		if pl.Credits == nil && pl.Charge == nil {
			return invalid("prepaid.purchase_limit", "purchase_limit needs credits and/or charge per month")
		}
		if pl.Credits != nil && (*pl.Credits <= 0 || !pl.Credits.Valid()) {
			return invalid("prepaid.purchase_limit.credits", "purchase_limit.credits must be positive")
		}
		if pl.Charge != nil {
			if err := checkMoneyValue("prepaid.purchase_limit.charge", *pl.Charge); err != nil {
				return err
			}
			if !pl.Charge.IsPositive() {
				return invalid("prepaid.purchase_limit.charge", "purchase_limit.charge must be positive")
			}
		}
	}
	if ar := c.AutoRecharge; ar != nil {
		if ar.Threshold <= 0 || !ar.Threshold.Valid() {
			return invalid("prepaid.auto_recharge.threshold", "auto_recharge.threshold must be positive")
		}
		if ar.Amount <= 0 || !ar.Amount.Valid() {
			return invalid("prepaid.auto_recharge.amount", "auto_recharge.amount must be positive")
		}
		if (c.MinPurchase != nil && ar.Amount < *c.MinPurchase) || (c.MaxPurchase != nil && ar.Amount > *c.MaxPurchase) {
			return invalid("prepaid.auto_recharge.amount", "auto_recharge.amount %s must be within min_purchase and max_purchase", ar.Amount)
		}
	}
	if p := c.Payment; p != nil && p.ExpiresIn != "" {
		if d, err := time.ParseDuration(p.ExpiresIn); err != nil || d < time.Minute || d > 90*24*time.Hour {
			return invalid("prepaid.payment.expires_in", "payment.expires_in must be a duration from 1m to 2160h, e.g. 24h, got %q", p.ExpiresIn)
		}
	}
	if len(c.Consumption) == 0 {
		return &FieldError{Field: "prepaid.consumption", Code: "required", Message: "at least one credit consumption row is required", Err: ErrInvalid}
	}
	if err := validateRates("prepaid.consumption", c.Consumption, l); err != nil {
		return err
	}
	if lb := c.LowBalance.Credits; lb != nil && (*lb < 0 || !lb.Valid()) {
		return invalid("prepaid.low_balance.credits", "low_balance.credits must not be negative")
	}
	if pc := c.LowBalance.Percent; pc != nil && (!pc.IsPositive() || pc.GreaterThan(decimal.NewFromInt(100))) {
		return invalid("prepaid.low_balance.percent", "low_balance.percent must be in (0, 100], got %s", pc)
	}
	switch c.Overage {
	case OverageAllow, OverageUnfunded:
	case "":
		return required("prepaid.overage_policy")
	default:
		return invalid("prepaid.overage_policy", "overage_policy must be overage or unfunded, got %q", c.Overage)
	}
	if e := c.OnEnd; e != nil {
		switch e.Remaining {
		case "", CarryOver, Expire:
		default:
			return invalid("prepaid.on_end.remaining_credits", "on_end.remaining_credits must be carry_over or expire, got %q", e.Remaining)
		}
	}
	return validateDebtLimit("prepaid.debt_limit", c.DebtLimit, c.Overage)
}

// validateDebtLimit: a limit on overage debt is a non-negative amount and
// only means something under the overage policy.
func validateDebtLimit(field string, lim *credit.Amount, policy OveragePolicy) error {
	switch {
	case lim == nil:
	case *lim < 0 || !lim.Valid():
		return invalid(field, "debt_limit must be a non-negative amount of credits, got %s", lim)
	case policy != OverageAllow:
		return invalid(field, "debt_limit needs overage_policy \"overage\" (under %q usage never goes into debt)", policy)
	}
	return nil
}

func validateRates(field string, rows []ConsumptionRate, l Lookup) error {
	seen := map[string]bool{}
	for i, r := range rows {
		f := fmt.Sprintf("%s[%d]", field, i)
		if r.FeatureID == "" {
			return required(f + ".feature_id")
		}
		feat, ok := l.Feature(r.FeatureID)
		if !ok {
			return unknown(f+".feature_id", "feature", r.FeatureID)
		}
		if feat.Meter.Kind != MeterEventBased {
			return &FieldError{Field: f + ".feature_id", Code: "meter_not_event_based", Message: MsgOnlyEventBased, Err: ErrNotEventMtr}
		}
		if !feat.Meter.Billable() { // MAX, LATEST, AVG: reporting meters
			return &FieldError{Field: f + ".feature_id", Code: "meter_reporting_only", Message: MsgOnlyEventBased, Err: ErrNotEventMtr}
		}
		if seen[r.FeatureID] {
			return invalid(f+".feature_id", "feature %q is mapped twice", r.FeatureID)
		}
		seen[r.FeatureID] = true
		if r.CreditsPerUnit <= 0 || !r.CreditsPerUnit.Valid() {
			return invalid(f+".credits_per_unit", "credits_per_unit must be positive, got %s", r.CreditsPerUnit)
		}
	}
	return nil
}

func validateAddress(field string, a *Address) error {
	if a == nil {
		return nil
	}
	if a.Line1 == "" {
		return required(field + ".line1")
	}
	if a.City == "" {
		return required(field + ".city")
	}
	if !countryRe.MatchString(a.Country) {
		return invalid(field+".country", "country must be an ISO 3166-1 alpha-2 code such as US, got %q", a.Country)
	}
	return nil
}

// ValidateCustomer checks a customer.
func ValidateCustomer(c *Customer) error {
	if err := checkID("id", c.ID); err != nil {
		return err
	}
	if err := checkName("name", c.Name); err != nil {
		return err
	}
	return validateAddress("address", c.Address)
}

// ParseDuration reads the ISO 8601 subset of expiration durations: P<n>D,
// P<n>W, P<n>M, P<n>Y with 1 <= n <= 9999.
func ParseDuration(s string) (n int, unit byte, err error) {
	m := durationRe.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("want an ISO 8601 duration such as P30D, P2W, P1M or P1Y, got %q", s)
	}
	n, _ = strconv.Atoi(m[1])
	return n, m[2][0], nil
}

// AddDuration adds an ISO 8601 duration (see ParseDuration) to t in UTC.
func AddDuration(t time.Time, s string) (time.Time, error) {
	n, unit, err := ParseDuration(s)
	if err != nil {
		return time.Time{}, err
	}
	t = t.UTC()
	switch unit {
	case 'D':
		return t.AddDate(0, 0, n), nil
	case 'W':
		return t.AddDate(0, 0, 7*n), nil
	case 'M':
		return t.AddDate(0, n, 0), nil
	default:
		return t.AddDate(n, 0, 0), nil
	}
}

// maxFuture bounds scheduled starts and expiry dates.
const maxFuture = 10 * 366 * 24 * time.Hour

// PrepareSubscription validates s against the catalog and fills what the
// server decides: the start instant (now, or Schedule.At), the billing section
// defaults from the customer, the product from the plan, CreatedAt. It
// returns the plan.
func PrepareSubscription(s *Subscription, l Lookup, now time.Time) (*Plan, error) {
	now = now.UTC().Truncate(time.Microsecond)
	if s.ID != "" {
		if err := checkID("id", s.ID); err != nil {
			return nil, err
		}
	}
	if s.CustomerID == "" {
		return nil, required("customer_id")
	}
	cust, ok := l.Customer(s.CustomerID)
	if !ok {
		return nil, unknown("customer_id", "customer", s.CustomerID)
	}
	if s.PlanID == "" {
		return nil, required("plan_id")
	}
	plan, ok := l.Plan(s.PlanID)
	if !ok {
		return nil, unknown("plan_id", "plan", s.PlanID)
	}
	if s.Product == "" {
		s.Product = plan.Product
	} else if s.Product != plan.Product {
		return nil, invalid("product", "plan %q belongs to product %q, not %q", plan.ID, plan.Product, s.Product)
	}
	if plan.BillingModel != BillingPrepaid || plan.Prepaid == nil {
		return nil, invalid("plan_id", "plan %q is not a prepaid plan", plan.ID)
	}
	pc := plan.Prepaid
	if s.Currency == "" {
		return nil, required("currency")
	}
	if !ValidCurrency(s.Currency) {
		return nil, invalid("currency", "currency must be an ISO 4217 code such as USD, got %q", s.Currency)
	}
	if s.CreditValue != nil {
		if err := checkMoneyValue("credit_value", *s.CreditValue); err != nil {
			return nil, err
		}
	} else if _, ok := pc.PriceIn(s.Currency); !ok {
		return nil, invalid("currency", "plan %q has no credit value in %s; choose one of its currencies or set credit_value", plan.ID, s.Currency)
	}
	switch s.Schedule.Start {
	case StartNow, "":
		if s.Schedule.At != nil {
			return nil, invalid("schedule.at", "schedule.at needs schedule.start \"at\"")
		}
		s.Schedule.Start = StartNow
		s.StartAt = now
	case StartAt:
		if s.Schedule.At == nil {
			return nil, required("schedule.at")
		}
		// A start in the past back-dates the subscription (a migration):
		// bounded like the future, and never before 1970.
		at := s.Schedule.At.UTC()
		if at.Before(now.Add(-maxFuture)) || at.Unix() < 0 {
			return nil, invalid("schedule.at", "schedule.at must be within 10 years of now, got %s", at.Format(time.RFC3339))
		}
		if at.After(now.Add(maxFuture)) {
			return nil, invalid("schedule.at", "schedule.at must be within 10 years")
		}
		s.StartAt = at
	default:
		return nil, invalid("schedule.start", "schedule.start must be now or at, got %q", s.Schedule.Start)
	}
	switch s.Billing.Period {
	case "":
		s.Billing.Period = PeriodMonth
	case PeriodMonth, PeriodYear:
	default:
		return nil, invalid("billing.period", "billing.period must be month or year, got %q", s.Billing.Period)
	}
	if s.Billing.Provider == "" {
		s.Billing.Provider = cust.BillingProvider
	}
	if s.Billing.Address == nil {
		s.Billing.Address = cust.Address
	} else if err := validateAddress("billing.address", s.Billing.Address); err != nil {
		return nil, err
	}
	if s.Billing.PaymentMethod == "" {
		s.Billing.PaymentMethod = cust.PaymentMethod
	}
	if err := validateIncluded(s, now); err != nil {
		return nil, err
	}
	if err := validateRates("consumption", s.Consumption, l); err != nil {
		return nil, err
	}
	if err := validateDebtLimit("debt_limit", s.DebtLimit, pc.Overage); err != nil {
		return nil, err
	}
	if s.Replaces != "" || s.ReplacedBy != "" {
		return nil, &FieldError{Field: "replaces", Code: "read_only", Message: "replaces and replaced_by are set by a plan change (POST /v1/subscriptions/{id}/change-plan)", Err: ErrInvalid}
	}
	s.Status = ""
	if s.EndAt != nil {
		end := s.EndAt.UTC()
		if !end.After(s.StartAt) {
			return nil, invalid("end_at", "end_at must be after the start, got %s", end.Format(time.RFC3339Nano))
		}
		s.EndAt = &end
	}
	s.CreatedAt = now
	return plan, nil
}

func validateIncluded(s *Subscription, now time.Time) error {
	in := &s.Included
	if !in.Enabled {
		if in.GrantType != "" || in.Amount != 0 || in.Expiration.Rule != "" {
			return invalid("included_credits.enabled", "included credits are set but not enabled")
		}
		return nil
	}
	switch in.GrantType {
	case GrantPurchased, GrantPromotional:
	case "":
		return required("included_credits.grant_type")
	default:
		return invalid("included_credits.grant_type", "grant_type must be purchased or promotional, got %q", in.GrantType)
	}
	if in.Amount <= 0 || !in.Amount.Valid() {
		return invalid("included_credits.amount", "included credits must be positive, got %s", in.Amount)
	}
	e := &in.Expiration
	switch e.Rule {
	case ExpireNever, ExpireEndOfBillingPeriod:
		if e.Duration != "" || e.Date != nil {
			return invalid("included_credits.expiration.rule", "rule %s takes no duration or date", e.Rule)
		}
	case ExpireAfterDuration:
		if e.Date != nil {
			return invalid("included_credits.expiration.date", "rule duration takes no date")
		}
		if e.Duration == "" {
			return required("included_credits.expiration.duration")
		}
		if _, _, err := ParseDuration(e.Duration); err != nil {
			return invalid("included_credits.expiration.duration", "%v", err)
		}
	case ExpireAtDate:
		if e.Duration != "" {
			return invalid("included_credits.expiration.duration", "rule date takes no duration")
		}
		if e.Date == nil {
			return required("included_credits.expiration.date")
		}
		if !e.Date.After(s.StartAt) {
			return invalid("included_credits.expiration.date", "expiration date must be after the subscription starts (%s)", s.StartAt.Format(time.RFC3339))
		}
		if e.Date.After(now.Add(2 * maxFuture)) {
			return invalid("included_credits.expiration.date", "expiration date must be within 20 years")
		}
	case "":
		return required("included_credits.expiration.rule")
	default:
		return invalid("included_credits.expiration.rule", "rule must be never, duration, date or end_of_billing_period, got %q", e.Rule)
	}
	return nil
}

// ExpiresAt is when the included credits expire, nil for never.
func (s *Subscription) ExpiresAt() *time.Time {
	e := s.Included.Expiration
	var t time.Time
	switch e.Rule {
	case ExpireAfterDuration:
		var err error
		if t, err = AddDuration(s.StartAt, e.Duration); err != nil {
			return nil
		}
	case ExpireAtDate:
		if e.Date == nil {
			return nil
		}
		t = e.Date.UTC()
	case ExpireEndOfBillingPeriod:
		if s.Billing.Period == PeriodYear {
			t = s.StartAt.UTC().AddDate(1, 0, 0)
		} else {
			t = s.StartAt.UTC().AddDate(0, 1, 0)
		}
	default:
		return nil
	}
	return &t
}

// EffectiveCreditValue is the subscription's effective money value of one credit: its
// override, else the plan's value in the subscription's currency.
func EffectiveCreditValue(s *Subscription, p *Plan) (v decimal.Decimal, source string, ok bool) {
	if s.CreditValue != nil {
		return *s.CreditValue, "subscription", true
	}
	if p.Prepaid == nil {
		return decimal.Decimal{}, "", false
	}
	v, ok = p.Prepaid.PriceIn(s.Currency)
	return v, "plan", ok
}
