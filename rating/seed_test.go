package rating

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func amt(s string) *credit.Amount { a := credit.MustParse(s); return &a }
func dec(s string) *decimal.Decimal {
	d := decimal.RequireFromString(s)
	return &d
}

// seedCatalog is the seed's prepaid plan: 1 AIT = 1.00 USD, min 250 / max
// 8,000, 1 email = 1 AIT; plus a SUM meter of tokens and a pre-aggregated
// meter that may not be mapped.
func seedCatalog() *Catalog {
	c := NewCatalog()
	c.Currencies["AIT"] = &CreditCurrency{Code: "AIT", Name: "AI Tokens", Symbol: "AIT"}
	c.Features["ai-agent-email"] = &Feature{ID: "ai-agent-email", Name: "AI Agent Email", Meter: Meter{Kind: MeterEventBased, EventName: "email.sent", Aggregation: AggCount}}
	c.Features["llm-tokens"] = &Feature{ID: "llm-tokens", Name: "LLM tokens", Meter: Meter{Kind: MeterEventBased, EventName: "llm.call", Aggregation: AggSum, Dimension: "tokens", Filters: []DimFilter{{Key: "model", Value: "large"}}}}
	c.Features["storage-gb"] = &Feature{ID: "storage-gb", Name: "Storage", Meter: Meter{Kind: MeterPreAggregated}}
	c.Plans["ai-prepaid"] = seedPlan()
	c.Customers["acme"] = &Customer{ID: "acme", Name: "Acme Inc", BillingProvider: "Customers EMEA",
		Address: &Address{Line1: "123 Main St", City: "NY", Country: "US"}, PaymentMethod: "card **** 4242 exp 12/2034"}
	c.Customers["globex"] = &Customer{ID: "globex", Name: "Globex"}
	return c
}

func seedPlan() *Plan {
	return &Plan{ID: "ai-prepaid", Product: "ai-agents", Name: "AI Agents Prepaid", Type: PlanPaid, BillingModel: BillingPrepaid,
		Prepaid: &PrepaidConfig{
			CreditCurrency: "AIT", TopUp: TopUpModel{Type: TopUpFlatRate},
			CurrencyValues: []Price{{Currency: "USD", Value: decimal.RequireFromString("1.00")}, {Currency: "EUR", Value: decimal.RequireFromString("0.95")}},
			MinPurchase:    amt("250"), MaxPurchase: amt("8000"),
			Consumption: []ConsumptionRate{{FeatureID: "ai-agent-email", CreditsPerUnit: credit.Credits(1)}},
			LowBalance:  LowBalance{Credits: amt("50"), Percent: dec("10")},
			Overage:     OverageUnfunded,
		}}
}

// seedSubscription is the seed's subscription: 0.04 USD override, 100 AIT
// promotional included credits that never expire, start now.
func seedSubscription() *Subscription {
	return &Subscription{ID: "sub-1", CustomerID: "acme", Product: "ai-agents", PlanID: "ai-prepaid", Currency: "USD",
		CreditValue: dec("0.04"),
		Included:    IncludedCredits{Enabled: true, GrantType: GrantPromotional, Amount: credit.Credits(100), Expiration: Expiration{Rule: ExpireNever}},
		Consumption: []ConsumptionRate{{FeatureID: "llm-tokens", CreditsPerUnit: credit.MustParse("0.001")}},
		Schedule:    Schedule{Start: StartNow},
	}
}
