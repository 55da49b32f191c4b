package balance

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/creditmeter/creditmeter/credit"
)

// Pure burn-down tests: no Redis.

func TestBurnOrderEveryPermutation(t *testing.T) {
	want := []*bucket{
		{ID: "promo-exp5", Type: Promotional, Expires: 5, Effective: 1, Seq: 9},
		{ID: "purch-exp5", Type: Purchased, Expires: 5, Effective: 0, Seq: 1},
		{ID: "promo-exp9-old", Type: Promotional, Expires: 9, Effective: 1, Seq: 8},
		{ID: "promo-exp9-new", Type: Promotional, Expires: 9, Effective: 2, Seq: 2},
		{ID: "adj-exp9", Type: Adjustment, Expires: 9, Effective: 0, Seq: 3},
		{ID: "purch-exp9", Type: Purchased, Expires: 9, Effective: 0, Seq: 4},
		{ID: "promo-never", Type: Promotional, Expires: never, Effective: 3, Seq: 5},
		{ID: "purch-never-a", Type: Purchased, Expires: never, Effective: 3, Seq: 6},
		{ID: "purch-never-b", Type: Purchased, Expires: never, Effective: 3, Seq: 7},
	}
	// Heap's algorithm over all 9! orders.
	a := append([]*bucket(nil), want...)
	n, count := len(a), 0
	cs := make([]int, n)
	check := func() {
		count++
		b := book{Grants: append([]*bucket(nil), a...)}
		b.sort()
		for i := range want {
			if b.Grants[i] != want[i] {
				t.Fatalf("from %v: position %d is %s, want %s", ids(a), i, b.Grants[i].ID, want[i].ID)
			}
		}
	}
	check()
	for i := 0; i < n; {
		if cs[i] < i {
			if i%2 == 0 {
				a[0], a[i] = a[i], a[0]
			} else {
				a[cs[i]], a[i] = a[i], a[cs[i]]
			}
			check()
			cs[i]++
			i = 0
		} else {
			cs[i] = 0
			i++
		}
	}
	if count != 362880 {
		t.Fatalf("%d permutations", count)
	}
}

func ids(gs []*bucket) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.ID)
	}
	return out
}

func TestEligibility(t *testing.T) {
	for _, typ := range []GrantType{Promotional, Purchased, Adjustment} {
		g := &bucket{Type: typ, Remaining: 1, Effective: 10, Expires: 20}
		for at, want := range map[int64]bool{9: false, 10: true, 19: true, 20: false} {
			if g.eligible(at, 0) != want {
				t.Errorf("%s: eligible(%d) = %v", typ, at, !want)
			}
		}
		// With a grace window of 3, purchased and adjustment grants cover
		// usage from 7; promotional ones still from 10.
		early := typ != Promotional
		for at, want := range map[int64]bool{6: false, 7: early, 9: early, 10: true, 19: true, 20: false} {
			if g.eligible(at, 3) != want {
				t.Errorf("%s: eligible(%d, grace 3) = %v", typ, at, !want)
			}
		}
	}
	if (&bucket{Remaining: 0, Effective: 0}).eligible(5, 0) || !(&bucket{Remaining: 1, Effective: 0, Expires: never}).eligible(1<<50, 0) {
		t.Error("remaining / never")
	}
}

func TestDrawTime(t *testing.T) {
	for _, tc := range []struct{ ts, now, grace, want int64 }{
		{100, 100, 10, 100}, {95, 100, 10, 95}, {90, 100, 10, 90}, {89, 100, 10, 90}, {150, 100, 10, 100}, {99, 100, 0, 100},
	} {
		if got := drawTime(tc.ts, tc.now, tc.grace); got != tc.want {
			t.Errorf("drawTime(%d, %d, %d) = %d, want %d", tc.ts, tc.now, tc.grace, got, tc.want)
		}
	}
}

// Random books: draws follow the order, take only from eligible grants, and
// take exactly min(amount, eligible remainders).
func TestDrawProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	types := []GrantType{Promotional, Purchased, Adjustment}
	for iter := 0; iter < 20000; iter++ {
		b := book{Grace: int64(r.IntN(3) * 5)}
		for i := 0; i < 1+r.IntN(8); i++ {
			exp := never
			if r.IntN(2) == 0 {
				exp = int64(10 + r.IntN(30))
			}
			rem := credit.Amount(r.IntN(5))
			b.Grants = append(b.Grants, &bucket{ID: fmt.Sprint("g", i), Type: types[r.IntN(3)], Amount: rem, Remaining: rem,
				Effective: int64(r.IntN(20)), Expires: exp, Seq: int64(i)})
		}
		b.sort()
		at := int64(r.IntN(40))
		amt := credit.Amount(r.IntN(15))
		before := map[string]credit.Amount{}
		var elig credit.Amount
		for _, g := range b.Grants {
			before[g.ID] = g.Remaining
			if g.eligible(at, b.Grace) {
				elig += g.Remaining
			}
		}
		draws, left := b.draw(at, amt)
		var sum credit.Amount
		for _, d := range draws {
			sum += d.Amount
		}
		if sum != min(amt, elig) || left != amt-sum {
			t.Fatalf("drew %s of %s, eligible %s, left %s", sum, amt, elig, left)
		}
		// Every grant drawn before the last one drawn is exhausted, and no
		// ineligible grant was touched.
		last := -1
		for i, g := range b.Grants {
			drawn := before[g.ID] - g.Remaining
			if drawn > 0 {
				last = i
				if !(&bucket{Type: g.Type, Remaining: 1, Effective: g.Effective, Expires: g.Expires}).eligible(at, b.Grace) {
					t.Fatalf("drew from ineligible %+v at %d", g, at)
				}
			}
		}
		for i := 0; i < last; i++ {
			g := b.Grants[i]
			if g.eligible(at, b.Grace) && g.Remaining > 0 {
				t.Fatalf("grant %s (pos %d) left %s while a later grant was drawn", g.ID, i, g.Remaining)
			}
		}
	}
}

func TestUsePolicies(t *testing.T) {
	mk := func() *book { return &book{Grants: []*bucket{{ID: "g", Type: Purchased, Amount: 5, Remaining: 5}}} }
	b := mk()
	if r := b.use(0, 0, 0, 8, Overage, nil); r.Overage != 3 || r.Unfunded != 0 || r.Balance != -3 || b.Debt != 3 {
		t.Fatalf("overage %+v", r)
	}
	b = mk()
	if r := b.use(0, 0, 0, 8, Unfunded, nil); r.Overage != 0 || r.Unfunded != 3 || r.Balance != 0 || b.Debt != 0 {
		t.Fatalf("unfunded %+v", r)
	}
	// Overage stops at -MaxAmount; the rest is unfunded.
	b = &book{Debt: credit.MaxAmount - 2}
	if r := b.use(0, 0, 0, 5, Overage, nil); r.Overage != 2 || r.Unfunded != 3 || r.Balance != -credit.MaxAmount {
		t.Fatalf("bound %+v", r)
	}
	// Settlement: debt is paid from grants eligible now.
	b = &book{Debt: 3, Grants: []*bucket{{ID: "f", Remaining: 5, Effective: 10}, {ID: "g", Remaining: 2}}}
	b.sort()
	b.settle(5)
	if b.Debt != 1 || b.Grants[0].ID != "g" || b.Grants[0].Remaining != 0 || b.balance() != 4 {
		t.Fatalf("settle %+v %+v", b, b.Grants)
	}
	// Sweep: expired at or before now-grace, once.
	b = &book{Grants: []*bucket{{ID: "e", Remaining: 4, Expires: 10}, {ID: "k", Remaining: 4, Expires: 11}}}
	if br := b.sweep(15, 5); len(br) != 1 || br[0].Grant != "e" || br[0].Amount != 4 || b.balance() != 4 {
		t.Fatalf("sweep %+v", br)
	}
	if br := b.sweep(15, 5); len(br) != 0 {
		t.Fatalf("second sweep %+v", br)
	}
}
