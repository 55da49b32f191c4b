package balance

import (
	"fmt"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// A top-up's charge is rounded to the currency's minor unit, half up
// (away from zero), once per top-up, so invoices add up in minor units.
func TestTopUpChargeRoundedToMinorUnit(t *testing.T) {
	e := newEnv(t, 0)
	for i, tc := range []struct {
		cur, value, amount, want string
	}{
		{"USD", "0.04", "300.000001", "12.00"}, // 12.00000004
		{"USD", "0.04", "250.125", "10.01"},    // 10.005: half up
		{"USD", "0.04", "250.124999", "10.00"}, // 10.00499996
		{"USD", "0.033", "300", "9.90"},        // exact
		{"EUR", "0.95", "250.5", "237.98"},     // 237.975
		{"JPY", "3", "250.5", "752"},           // 751.5, no minor unit
		{"KWD", "0.0123", "300.05", "3.691"},   // 3.690615, three places
		{"usd", "0.000001", "250", "0.00"},     // 0.00025: below a cent
		{"XYZ", "0.04", "300.000001", "12.00"}, // unknown currency: two places
	} {
		sub := fmt.Sprintf("round-%d", i)
		e.open(sub, Overage, func(a *AccountSpec) { a.Currency, a.CreditValue = tc.cur, decimal.RequireFromString(tc.value) })
		r, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t", Subscription: sub, Amount: credit.MustParse(tc.amount)})
		if err != nil {
			t.Fatalf("%s %s at %s: %v", tc.cur, tc.amount, tc.value, err)
		}
		want := decimal.RequireFromString(tc.want)
		if !r.Charge.Equal(want) {
			t.Errorf("%s %s at %s: charged %s, want %s", tc.cur, tc.amount, tc.value, r.Charge, tc.want)
		}
		es := e.ledger(sub)
		if got := es[len(es)-1].Fields["charge"]; !decimal.RequireFromString(got).Equal(want) {
			t.Errorf("%s %s at %s: ledger charge %s, want %s", tc.cur, tc.amount, tc.value, got, tc.want)
		}
	}
}
