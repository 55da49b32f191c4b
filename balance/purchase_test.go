package balance

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// 50 parallel top-ups of 201 never exceed the month's purchase limit, in
// credits or in money; a replay still answers; the next month starts over.
func TestPurchaseLimitExactUnderConcurrency(t *testing.T) {
	e := newEnv(t, 0)
	e.open("lim-credits", Overage, func(a *AccountSpec) { a.PurchaseLimitCredits = c(1000) })
	e.open("lim-money", Overage, func(a *AccountSpec) { a.PurchaseLimitCharge = decimal.RequireFromString("30") })
	for sub, wantOK := range map[string]int{"lim-credits": 4, "lim-money": 3} { // 4 × 201 ≤ 1000; 3 × 8.04 ≤ 30
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, limited := 0, 0
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.s.TopUp(e.ctx, TopUpRequest{Key: fmt.Sprintf("p%d", i), Subscription: sub, Amount: c(201)})
				mu.Lock()
				defer mu.Unlock()
				var pl *PurchaseLimitError
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrPurchaseLimit) && errors.As(err, &pl):
					limited++
				default:
					t.Errorf("%s: %v", sub, err)
				}
			}()
		}
		wg.Wait()
		if ok != wantOK || limited != 50-wantOK {
			t.Fatalf("%s: %d top-ups, %d refused, want %d and %d", sub, ok, limited, wantOK, 50-wantOK)
		}
		if v := e.balance(sub); v.Total != credit.Amount(wantOK)*c(201) {
			t.Fatalf("%s: balance %s", sub, v.Total)
		}
	}
	// the refusal names the limit and what is left of it
	_, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "one-more", Subscription: "lim-credits", Amount: c(200)})
	var pl *PurchaseLimitError
	if !errors.As(err, &pl) || pl.Kind != "credits" || pl.Limit != "1000" || pl.Used != "804" || pl.Period != "2026-11" {
		t.Fatalf("over the limit: %#v", err)
	}
	// 196 more fit exactly
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "rest", Subscription: "lim-credits", Amount: c(196)}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "december", Subscription: "lim-credits", Amount: c(1000)}); err != nil {
		t.Fatalf("a new month: %v", err)
	}
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "december-2", Subscription: "lim-credits", Amount: credit.MustParse("0.000001")}); !errors.Is(err, ErrPurchaseLimit) {
		t.Fatalf("the new month's limit: %v", err)
	}
}
