package rating

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

func TestQuote(t *testing.T) {
	_, tbl := compileSeed(t)
	large := []Dim{{Key: "model", Str: "large"}}
	cases := []struct {
		name, sub, feature, qty string
		dims                    []Dim
		credits, money          string
		err                     error
	}{
		{"3 emails", "sub-1", "ai-agent-email", "3", nil, "3", "0.12", nil},
		{"1234 tokens at 0.001", "sub-1", "llm-tokens", "1234", nil, "1.234", "0.04936", nil},
		{"rounded as the engine rounds", "sub-1", "llm-tokens", "0.0015", large, "0.000002", "0.00000008", nil},
		{"dimensions matching the filter", "sub-1", "llm-tokens", "1000", large, "1", "0.04", nil},
		{"dimensions not matching", "sub-1", "llm-tokens", "1000", []Dim{{Key: "model", Str: "small"}}, "", "", ErrFilterMismatch},
		{"half an email", "sub-1", "ai-agent-email", "0.5", nil, "", "", ErrNotWhole},
		{"2.0 emails are 2", "sub-1", "ai-agent-email", "2.0", nil, "2", "0.08", nil},
		{"feature not in the table", "sub-1", "storage-gb", "1", nil, "", "", ErrFeatureNotRated},
		{"unknown subscription", "nope", "ai-agent-email", "1", nil, "", "", ErrUnknownSubscription},
		{"negative", "sub-1", "ai-agent-email", "-1", nil, "", "", ErrNegativeQuantity},
		{"overflow", "sub-1", "ai-agent-email", "9000000001", nil, "", "", ErrOverflow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cr, m, err := tbl.Quote(tc.sub, tc.feature, num(tc.qty), tc.dims)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && (cr.String() != tc.credits || m.String() != tc.money) {
				t.Fatalf("%s credits %s money; want %s %s", cr, m, tc.credits, tc.money)
			}
		})
	}
}

// TestQuoteMatchesRate: a quote of a SUM quantity is what the engine's
// rating of one event with that quantity gives; a COUNT quote of n is n
// events rated one by one.
func TestQuoteMatchesRate(t *testing.T) {
	_, tbl := compileSeed(t)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		q := num(fmt.Sprintf("%d.%04d", r.IntN(100000), r.IntN(10000)))
		ev := Event{CustomerID: "acme", SubscriptionID: "sub-1", Name: "llm.call", Timestamp: t0.Add(time.Minute),
			Dims: []Dim{{Key: "model", Str: "large"}, {Key: "tokens", Num: q, IsNum: true}}}
		lines, err := tbl.Rate(&ev, nil)
		cr, m, qerr := tbl.Quote("sub-1", "llm-tokens", q, nil)
		if err != nil || qerr != nil || len(lines) != 1 || lines[0].Credits != cr || lines[0].Money != m {
			t.Fatalf("%s: rate %+v %v, quote %s %s %v", q, lines, err, cr, m, qerr)
		}
		n := r.IntN(50)
		var sum credit.Amount
		var money Money
		for j := 0; j < n; j++ {
			l, _ := tbl.Rate(&Event{CustomerID: "acme", SubscriptionID: "sub-1", Name: "email.sent", Timestamp: t0.Add(time.Minute)}, nil)
			sum, money = sum+l[0].Credits, money+l[0].Money
		}
		if cr, m, err := tbl.Quote("sub-1", "ai-agent-email", num(fmt.Sprint(n)), nil); err != nil || cr != sum || m != money {
			t.Fatalf("%d emails: quote %s %s %v, rated %s %s", n, cr, m, err, sum, money)
		}
	}
}

func TestDebtLimitValidation(t *testing.T) {
	p := seedPlan()
	p.Prepaid.DebtLimit = amt("50")
	checkFieldErr(t, ValidatePlan(p, seedCatalog()), "prepaid.debt_limit", ErrInvalid, `debt_limit needs overage_policy "overage" (under "unfunded" usage never goes into debt)`)
	p.Prepaid.Overage = OverageAllow
	checkFieldErr(t, ValidatePlan(p, seedCatalog()), "", nil, "")
	p.Prepaid.DebtLimit = amt("-1")
	checkFieldErr(t, ValidatePlan(p, seedCatalog()), "prepaid.debt_limit", ErrInvalid, "")

	c := seedCatalog()
	s := seedSubscription()
	s.DebtLimit = amt("10")
	_, err := PrepareSubscription(s, c, t0)
	checkFieldErr(t, err, "debt_limit", ErrInvalid, "")
	c.Plans["ai-prepaid"].Prepaid.Overage = OverageAllow
	c.Plans["ai-prepaid"].Prepaid.DebtLimit = amt("50")
	s = seedSubscription()
	plan, err := PrepareSubscription(s, c, t0)
	if err != nil || *Terms(s, plan).DebtLimit != credit.Credits(50) {
		t.Fatalf("plan's limit: %v %+v", err, Terms(s, plan))
	}
	s.DebtLimit = amt("0")
	if _, err := PrepareSubscription(s, c, t0); err != nil || *Terms(s, plan).DebtLimit != 0 {
		t.Fatalf("subscription's limit 0 overrides the plan's 50: %v %+v", err, Terms(s, plan))
	}
	c.Plans["ai-prepaid"].Prepaid.DebtLimit = nil
	s.DebtLimit = nil
	if Terms(s, plan).DebtLimit != nil {
		t.Fatal("no limit anywhere, terms have one")
	}
}
