package balance

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

// TestDebtLimitExactUnderConcurrency: 16 writers, one partition each, drive an
// overage account with a 25-credit debt limit far past it; the debt stops at
// exactly the limit, the rest is unfunded, and Check refuses beyond it.
func TestDebtLimitExactUnderConcurrency(t *testing.T) {
	e := newEnv(t, 15*time.Minute)
	sub := "dlim"
	limit := c(25)
	e.open(sub, Overage, func(a *AccountSpec) { a.DebtLimit = &limit })
	e.grant(sub, "included", Promotional, c(10), time.Time{}, time.Time{})

	r, err := e.s.Check(e.ctx, sub, c(35))
	if err != nil || !r.Allowed || r.Spendable != c(35) || r.DebtLimit == nil || *r.DebtLimit != limit {
		t.Fatalf("check 35 of 10 + limit 25: %+v %v", r, err)
	}
	if r, _ := e.s.Check(e.ctx, sub, c(35)+1); r.Allowed {
		t.Fatalf("check one µcredit past the limit allowed: %+v", r)
	}

	const writers, perWriter = 16, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				b := batch(sub, int32(w), line(fmt.Sprint("e", w, "-", i), int64(w*perWriter+i), e.clock.Now(), credit.Credits(1)/3))
				if _, err := e.s.Apply(e.ctx, []Batch{b}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	v := e.balance(sub)
	used := credit.Amount(writers*perWriter) * (credit.Credits(1) / 3)
	if v.Debt != limit || v.Total != -limit || v.Unfunded != used-c(10)-limit {
		t.Fatalf("debt %s total %s unfunded %s; want debt 25, total -25, unfunded %s", v.Debt, v.Total, v.Unfunded, used-c(10)-limit)
	}
	e.checkLedger(sub)
	if r, _ := e.s.Check(e.ctx, sub, 1); r.Allowed || r.Spendable != 0 {
		t.Fatalf("check at the limit: %+v", r)
	}
	if r, _ := e.s.Check(e.ctx, sub, 0); !r.Allowed {
		t.Fatalf("check of 0 at the limit refused: %+v", r)
	}

	// A top-up settles the debt; the room comes back.
	e.grant(sub, "more", Purchased, c(30), time.Time{}, time.Time{})
	if r, _ := e.s.Check(e.ctx, sub, c(30)); !r.Allowed || r.Available != c(5) || r.Spendable != c(30) {
		t.Fatalf("after 30 more: %+v", r)
	}
	if r, _ := e.s.Check(e.ctx, sub, c(30)+1); r.Allowed {
		t.Fatalf("after 30 more: %+v", r)
	}

	// Lowering the limit below the debt: no more overage, nothing undone.
	res := e.apply(batch(sub, 99, line("big", 1, e.clock.Now(), c(20))))[0]
	if l := res.Lines[0]; l.Overage != c(15) || l.Unfunded != 0 {
		t.Fatalf("20 on 5 available: %+v", l)
	}
	zero := credit.Amount(0)
	e.open(sub, Overage, func(a *AccountSpec) { a.DebtLimit = &zero })
	res = e.apply(batch(sub, 99, line("after", 2, e.clock.Now(), c(1))))[0]
	if l := res.Lines[0]; l.Overage != 0 || l.Unfunded != c(1) || res.Debt != c(15) {
		t.Fatalf("limit 0 with debt 15: %+v debt %s", l, res.Debt)
	}
	// No limit again: overage as before.
	e.open(sub, Overage)
	res = e.apply(batch(sub, 99, line("free", 3, e.clock.Now(), c(1))))[0]
	if l := res.Lines[0]; l.Overage != c(1) || res.Debt != c(16) {
		t.Fatalf("no limit: %+v debt %s", l, res.Debt)
	}
	e.checkLedger(sub)
}

// TestDebtLimitRefusesNegative: a negative limit is invalid.
func TestDebtLimitRefusesNegative(t *testing.T) {
	e := newEnv(t, 15*time.Minute)
	neg := credit.Amount(-1)
	_, err := e.s.OpenAccount(e.ctx, AccountSpec{Subscription: "neg", Customer: "c", Policy: Overage, Currency: "USD", DebtLimit: &neg})
	if err == nil {
		t.Fatal("negative debt limit accepted")
	}
}
