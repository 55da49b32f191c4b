package rating

import (
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

func TestValidatePlan(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(p *Plan)
		field  string
		err    error
		msg    string
	}{
		{"seed plan is valid", func(p *Plan) {}, "", nil, ""},
		{"free plan cannot be prepaid", func(p *Plan) { p.Type = PlanFree }, "billing_model", ErrInvalid, "only a paid plan may use billing model prepaid"},
		{"prepaid needs config", func(p *Plan) { p.Prepaid = nil }, "prepaid", ErrInvalid, ""},
		{"postpaid takes no prepaid config", func(p *Plan) { p.BillingModel = BillingPostpaid }, "prepaid", ErrInvalid, ""},
		{"bad type", func(p *Plan) { p.Type = "cheap" }, "type", ErrInvalid, ""},
		{"missing id", func(p *Plan) { p.ID = "" }, "id", ErrInvalid, ""},
		{"bad id", func(p *Plan) { p.ID = "a b" }, "id", ErrInvalid, ""},
		{"unknown credit currency", func(p *Plan) { p.Prepaid.CreditCurrency = "XYZ" }, "prepaid.credit_currency", ErrUnknownRef, ""},
		{"top-up model", func(p *Plan) { p.Prepaid.TopUp.Type = "tiered" }, "prepaid.top_up_model.type", ErrInvalid, ""},
		{"min > max", func(p *Plan) { p.Prepaid.MinPurchase = amt("9000") }, "prepaid.min_purchase", ErrInvalid, "min_purchase (9000) must not exceed max_purchase (8000)"},
		{"negative min", func(p *Plan) { p.Prepaid.MinPurchase = amt("-1") }, "prepaid.min_purchase", ErrInvalid, ""},
		{"bad currency", func(p *Plan) { p.Prepaid.CurrencyValues[1].Currency = "euro" }, "prepaid.currency_values[1].currency", ErrInvalid, ""},
		{"duplicate currency", func(p *Plan) { p.Prepaid.CurrencyValues[1].Currency = "USD" }, "prepaid.currency_values[1].currency", ErrInvalid, ""},
		{"zero value", func(p *Plan) { p.Prepaid.CurrencyValues[0].Value = decimal.Zero }, "prepaid.currency_values[0].value", ErrInvalid, ""},
		{"too precise value", func(p *Plan) { p.Prepaid.CurrencyValues[0].Value = decimal.RequireFromString("0.0000000001") }, "prepaid.currency_values[0].value", ErrInvalid, ""},
		{"no consumption", func(p *Plan) { p.Prepaid.Consumption = nil }, "prepaid.consumption", ErrInvalid, ""},
		{"unknown feature", func(p *Plan) { p.Prepaid.Consumption[0].FeatureID = "nope" }, "prepaid.consumption[0].feature_id", ErrUnknownRef, ""},
		{"pre-aggregated meter", func(p *Plan) {
			p.Prepaid.Consumption = append(p.Prepaid.Consumption, ConsumptionRate{FeatureID: "storage-gb", CreditsPerUnit: credit.Credits(1)})
		}, "prepaid.consumption[1].feature_id", ErrNotEventMtr, MsgOnlyEventBased},
		{"zero rate", func(p *Plan) { p.Prepaid.Consumption[0].CreditsPerUnit = 0 }, "prepaid.consumption[0].credits_per_unit", ErrInvalid, ""},
		{"negative rate", func(p *Plan) { p.Prepaid.Consumption[0].CreditsPerUnit = -credit.Unit }, "prepaid.consumption[0].credits_per_unit", ErrInvalid, ""},
		{"duplicate feature", func(p *Plan) { p.Prepaid.Consumption = append(p.Prepaid.Consumption, p.Prepaid.Consumption[0]) }, "prepaid.consumption[1].feature_id", ErrInvalid, ""},
		{"percent over 100", func(p *Plan) { p.Prepaid.LowBalance.Percent = dec("101") }, "prepaid.low_balance.percent", ErrInvalid, ""},
		{"negative threshold", func(p *Plan) { p.Prepaid.LowBalance.Credits = amt("-1") }, "prepaid.low_balance.credits", ErrInvalid, ""},
		{"overage policy", func(p *Plan) { p.Prepaid.Overage = "" }, "prepaid.overage_policy", ErrInvalid, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := seedCatalog()
			p := seedPlan()
			tc.mutate(p)
			checkFieldErr(t, ValidatePlan(p, c), tc.field, tc.err, tc.msg)
		})
	}
}

func checkFieldErr(t *testing.T, err error, field string, sentinel error, msg string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want FieldError on %s, got %v", field, err)
	}
	if fe.Field != field {
		t.Errorf("field = %q, want %q (%v)", fe.Field, field, err)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %v does not wrap %v", err, sentinel)
	}
	if msg != "" && fe.Message != msg {
		t.Errorf("message = %q, want %q", fe.Message, msg)
	}
}

func TestValidateFeature(t *testing.T) {
	ok := Meter{Kind: MeterEventBased, EventName: "e", Aggregation: AggCount}
	cases := []struct {
		name  string
		f     Feature
		field string
	}{
		{"count", Feature{ID: "f", Name: "F", Meter: ok}, ""},
		{"sum", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, EventName: "e", Aggregation: AggSum, Dimension: "tokens"}}, ""},
		{"pre-aggregated", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterPreAggregated}}, ""},
		{"pre-aggregated with event", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterPreAggregated, EventName: "e"}}, "meter.kind"},
		{"no kind", Feature{ID: "f", Name: "F", Meter: Meter{EventName: "e"}}, "meter.kind"},
		{"sum without dimension", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, EventName: "e", Aggregation: AggSum}}, "meter.dimension"},
		{"count with dimension", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, EventName: "e", Aggregation: AggCount, Dimension: "x"}}, "meter.dimension"},
		{"bad aggregation", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, EventName: "e", Aggregation: "MEDIAN"}}, "meter.aggregation"},
		{"no event name", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, Aggregation: AggCount}}, "meter.event_name"},
		{"filter without key", Feature{ID: "f", Name: "F", Meter: Meter{Kind: MeterEventBased, EventName: "e", Aggregation: AggCount, Filters: []DimFilter{{Value: "x"}}}}, "meter.filters[0].key"},
		{"no name", Feature{ID: "f", Meter: ok}, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateFeature(&tc.f)
			sentinel := error(ErrInvalid)
			checkFieldErr(t, err, tc.field, sentinel, "")
		})
	}
}

func TestValidateCurrencyAndCustomer(t *testing.T) {
	checkFieldErr(t, ValidateCurrency(&CreditCurrency{Code: "AIT", Name: "AI Tokens"}), "", nil, "")
	checkFieldErr(t, ValidateCurrency(&CreditCurrency{Code: "ait", Name: "AI Tokens"}), "code", ErrInvalid, "")
	checkFieldErr(t, ValidateCurrency(&CreditCurrency{Code: "AIT"}), "name", ErrInvalid, "")
	checkFieldErr(t, ValidateCustomer(&Customer{ID: "acme", Name: "Acme"}), "", nil, "")
	checkFieldErr(t, ValidateCustomer(&Customer{ID: "acme", Name: "Acme", Address: &Address{Line1: "1 St", City: "NY", Country: "USA"}}), "address.country", ErrInvalid, "")
}

func TestPrepareSubscription(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *Subscription)
		field  string
		err    error
		msg    string
	}{
		{"seed subscription", func(s *Subscription) {}, "", nil, ""},
		{"unknown customer", func(s *Subscription) { s.CustomerID = "nobody" }, "customer_id", ErrUnknownRef, ""},
		{"unknown plan", func(s *Subscription) { s.PlanID = "nope" }, "plan_id", ErrUnknownRef, ""},
		{"wrong product", func(s *Subscription) { s.Product = "other" }, "product", ErrInvalid, ""},
		{"bad currency", func(s *Subscription) { s.Currency = "usd" }, "currency", ErrInvalid, ""},
		{"currency the plan does not price, no override", func(s *Subscription) { s.Currency = "GBP"; s.CreditValue = nil }, "currency", ErrInvalid, ""},
		{"currency the plan does not price, with override", func(s *Subscription) { s.Currency = "GBP" }, "", nil, ""},
		{"negative override", func(s *Subscription) { s.CreditValue = dec("-0.04") }, "credit_value", ErrInvalid, ""},
		{"included without type", func(s *Subscription) { s.Included.GrantType = "" }, "included_credits.grant_type", ErrInvalid, ""},
		{"included zero", func(s *Subscription) { s.Included.Amount = 0 }, "included_credits.amount", ErrInvalid, ""},
		{"included bad rule", func(s *Subscription) { s.Included.Expiration.Rule = "soon" }, "included_credits.expiration.rule", ErrInvalid, ""},
		{"bad duration", func(s *Subscription) { s.Included.Expiration = Expiration{Rule: ExpireAfterDuration, Duration: "30d"} }, "included_credits.expiration.duration", ErrInvalid, ""},
		{"date before start", func(s *Subscription) {
			d := t0.Add(-time.Hour)
			s.Included.Expiration = Expiration{Rule: ExpireAtDate, Date: &d}
		}, "included_credits.expiration.date", ErrInvalid, ""},
		{"disabled but set", func(s *Subscription) { s.Included.Enabled = false }, "included_credits.enabled", ErrInvalid, ""},
		{"override unknown feature", func(s *Subscription) { s.Consumption[0].FeatureID = "nope" }, "consumption[0].feature_id", ErrUnknownRef, ""},
		{"override negative rate", func(s *Subscription) { s.Consumption[0].CreditsPerUnit = -1 }, "consumption[0].credits_per_unit", ErrInvalid, ""},
		{"override pre-aggregated", func(s *Subscription) { s.Consumption[0].FeatureID = "storage-gb" }, "consumption[0].feature_id", ErrNotEventMtr, MsgOnlyEventBased},
		{"start in the past (back-dated)", func(s *Subscription) {
			at := t0.Add(-time.Hour)
			s.Schedule = Schedule{Start: StartAt, At: &at}
		}, "", nil, ""},
		{"start more than 10 years back", func(s *Subscription) {
			at := t0.Add(-11 * 366 * 24 * time.Hour)
			s.Schedule = Schedule{Start: StartAt, At: &at}
		}, "schedule.at", ErrInvalid, ""},
		{"end before start", func(s *Subscription) { e := t0; s.EndAt = &e }, "end_at", ErrInvalid, ""},
		{"end after start", func(s *Subscription) { e := t0.Add(time.Hour); s.EndAt = &e }, "", nil, ""},
		{"replaces set by the client", func(s *Subscription) { s.Replaces = "sub-0" }, "replaces", ErrInvalid, ""},
		{"start at without time", func(s *Subscription) { s.Schedule = Schedule{Start: StartAt} }, "schedule.at", ErrInvalid, ""},
		{"bad start", func(s *Subscription) { s.Schedule = Schedule{Start: "later"} }, "schedule.start", ErrInvalid, ""},
		{"bad billing address", func(s *Subscription) { s.Billing.Address = &Address{Line1: "x", City: "y"} }, "billing.address.country", ErrInvalid, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := seedCatalog()
			s := seedSubscription()
			tc.mutate(s)
			_, err := PrepareSubscription(s, c, t0)
			checkFieldErr(t, err, tc.field, tc.err, tc.msg)
		})
	}
	c := seedCatalog()
	c.Plans["postpaid"] = &Plan{ID: "postpaid", Product: "ai-agents", Name: "Postpaid", Type: PlanPaid, BillingModel: BillingPostpaid}
	s := seedSubscription()
	s.PlanID = "postpaid"
	_, err := PrepareSubscription(s, c, t0)
	checkFieldErr(t, err, "plan_id", ErrInvalid, `plan "postpaid" is not a prepaid plan`)
}

func TestSeedPreview(t *testing.T) {
	c := seedCatalog()
	s := seedSubscription()
	pv, err := PreviewSubscription(s, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !pv.CreditValue.Equal(decimal.RequireFromString("0.04")) || pv.CreditValueSource != "subscription" || pv.Currency != "USD" || pv.CreditCurrency != "AIT" {
		t.Errorf("credit value %s %s from %s, credit currency %s", pv.CreditValue, pv.Currency, pv.CreditValueSource, pv.CreditCurrency)
	}
	if len(pv.Consumption) != 2 || pv.Consumption[0].FeatureID != "ai-agent-email" || pv.Consumption[0].CreditsPerUnit != credit.Credits(1) || pv.Consumption[0].Source != "plan" ||
		pv.Consumption[1].FeatureID != "llm-tokens" || pv.Consumption[1].Source != "subscription" {
		t.Errorf("consumption = %+v", pv.Consumption)
	}
	if pv.IncludedCredits == nil || pv.IncludedCredits.Amount != credit.Credits(100) || pv.IncludedCredits.GrantType != GrantPromotional || pv.IncludedCredits.ExpiresAt != nil {
		t.Errorf("included = %+v", pv.IncludedCredits)
	}
	if !pv.ChargeNow.Amount.IsZero() || pv.ChargeNow.Currency != "USD" {
		t.Errorf("promotional credits charge %v", pv.ChargeNow)
	}
	if !pv.StartAt.Equal(t0) || pv.Billing.Provider != "Customers EMEA" || pv.Billing.PaymentMethod != "card **** 4242 exp 12/2034" || pv.Billing.Address.Line1 != "123 Main St" {
		t.Errorf("start %s billing %+v", pv.StartAt, pv.Billing)
	}
	if *pv.MinPurchase != credit.Credits(250) || *pv.MaxPurchase != credit.Credits(8000) {
		t.Errorf("limits %s..%s", pv.MinPurchase, pv.MaxPurchase)
	}

	// Purchased included credits cost amount × credit value.
	cases := []struct {
		override *decimal.Decimal
		currency string
		amount   string
		charge   string
	}{
		{dec("0.04"), "USD", "100", "4"},
		{nil, "USD", "100", "100"},
		{nil, "EUR", "250", "237.5"},
		{dec("0.033"), "USD", "100", "3.3"},
		{dec("0.005"), "USD", "1", "0.01"}, // 0.005 rounds half away from zero to the cent
		{dec("0.5"), "JPY", "3", "2"},      // 1.5 yen rounds to 2
	}
	for _, tc := range cases {
		s := seedSubscription()
		s.CreditValue, s.Currency = tc.override, tc.currency
		s.Included.GrantType, s.Included.Amount = GrantPurchased, credit.MustParse(tc.amount)
		if tc.currency == "JPY" {
			s.CreditValue = tc.override
		}
		pv, err := PreviewSubscription(s, c, t0)
		if err != nil {
			t.Fatal(err)
		}
		if !pv.ChargeNow.Amount.Equal(decimal.RequireFromString(tc.charge)) || pv.ChargeNow.Currency != tc.currency {
			t.Errorf("%s × %v %s: charge %s %s, want %s", tc.amount, tc.override, tc.currency, pv.ChargeNow.Amount, pv.ChargeNow.Currency, tc.charge)
		}
		g, ok := InitialGrant(s, c.Plans["ai-prepaid"])
		if !ok || g.Type != GrantPurchased || !g.Charge.Amount.Equal(pv.ChargeNow.Amount) || g.Amount != s.Included.Amount {
			t.Errorf("initial grant %+v", g)
		}
	}
}

func TestExpiresAt(t *testing.T) {
	date := t0.AddDate(0, 2, 0)
	cases := []struct {
		e    Expiration
		per  BillingPeriod
		want *time.Time
	}{
		{Expiration{Rule: ExpireNever}, PeriodMonth, nil},
		{Expiration{Rule: ExpireAfterDuration, Duration: "P30D"}, PeriodMonth, ptr(t0.AddDate(0, 0, 30))},
		{Expiration{Rule: ExpireAfterDuration, Duration: "P2W"}, PeriodMonth, ptr(t0.AddDate(0, 0, 14))},
		{Expiration{Rule: ExpireAfterDuration, Duration: "P1Y"}, PeriodMonth, ptr(t0.AddDate(1, 0, 0))},
		{Expiration{Rule: ExpireAtDate, Date: &date}, PeriodMonth, &date},
		{Expiration{Rule: ExpireEndOfBillingPeriod}, PeriodMonth, ptr(t0.AddDate(0, 1, 0))},
		{Expiration{Rule: ExpireEndOfBillingPeriod}, PeriodYear, ptr(t0.AddDate(1, 0, 0))},
	}
	for _, tc := range cases {
		s := seedSubscription()
		s.Included.Expiration, s.Billing.Period = tc.e, tc.per
		if _, err := PrepareSubscription(s, seedCatalog(), t0); err != nil {
			t.Fatalf("%+v: %v", tc.e, err)
		}
		got := s.ExpiresAt()
		if (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(*tc.want)) {
			t.Errorf("%+v %s: expires %v, want %v", tc.e, tc.per, got, tc.want)
		}
	}
}

func ptr(t time.Time) *time.Time { return &t }

func TestCheckPurchase(t *testing.T) {
	pc := seedPlan().Prepaid
	for s, code := range map[string]string{"250": "", "8000": "", "249.999999": "below_minimum", "8000.000001": "above_maximum", "0": "invalid"} {
		err := pc.CheckPurchase(credit.MustParse(s))
		var fe *FieldError
		if code == "" && err != nil || code != "" && (!errors.As(err, &fe) || fe.Code != code || fe.Field != "amount") {
			t.Errorf("CheckPurchase(%s) = %v, want code %q", s, err, code)
		}
	}
}
