package balance

import (
	"sort"

	"github.com/creditmeter/creditmeter/credit"
)

// This file is the burn-down logic in pure Go. The Lua scripts are the
// source of truth in production; this mirror computes Balance and Check
// from a snapshot, and tests cross-check the scripts against it (the
// mirror's draw, sweep and settle live in book_test.go).

// never is the stored expiry of a grant that does not expire.
const never int64 = 0

// GrantType is the kind of a grant bucket (defined once, in credit).
type GrantType = credit.GrantType

// Grant types.
const (
	Promotional = credit.Promotional
	Purchased   = credit.Purchased
	Adjustment  = credit.Adjustment
)

// rank orders grants of equal expiry: free credits first, purchased last,
// because purchased credits carry a cost basis (refundable money).
func rank(t GrantType) int {
	switch t {
	case Promotional:
		return 0
	case Adjustment:
		return 1
	default:
		return 2
	}
}

// bucket is the burn-down state of one grant; times are Unix ms and
// Expires is never (0) for a grant that does not expire.
type bucket struct {
	ID        string
	Type      GrantType
	Amount    credit.Amount
	Remaining credit.Amount
	Effective int64
	Expires   int64
	Seq       int64
	CostBasis string
}

func (g *bucket) expKey() int64 {
	if g.Expires == never {
		return 1<<63 - 1
	}
	return g.Expires
}

// burnsBefore is the burn-down order: soonest expiry first (never last);
// at equal expiry promotional, adjustment, purchased; then oldest
// effective-at; then creation order.
func burnsBefore(a, b *bucket) bool {
	if ea, eb := a.expKey(), b.expKey(); ea != eb {
		return ea < eb
	}
	if ra, rb := rank(a.Type), rank(b.Type); ra != rb {
		return ra < rb
	}
	if a.Effective != b.Effective {
		return a.Effective < b.Effective
	}
	return a.Seq < b.Seq
}

// eligible reports whether g may fund usage that happened at time at.
// Purchased and adjustment grants also cover usage dated up to grace before
// their effective time (an event a moment before its top-up); promotional
// grants start exactly.
func (g *bucket) eligible(at, grace int64) bool {
	eff := g.Effective
	if g.Type != Promotional {
		eff -= grace
	}
	return g.Remaining > 0 && eff <= at && (g.Expires == never || at < g.Expires)
}

// book is one subscription's grants and overage debt; the balance is
// sum(Remaining) - Debt. Grace is the grace window in ms.
type book struct {
	Grants []*bucket
	Debt   credit.Amount
	Grace  int64
}

func (b *book) sort() {
	sort.SliceStable(b.Grants, func(i, j int) bool { return burnsBefore(b.Grants[i], b.Grants[j]) })
}

func (b *book) balance() credit.Amount {
	var s credit.Amount
	for _, g := range b.Grants {
		s += g.Remaining
	}
	return s - b.Debt
}

// available is what may be spent at time at: eligible remainders less debt.
func (b *book) available(at int64) credit.Amount {
	var s credit.Amount
	for _, g := range b.Grants {
		if g.eligible(at, b.Grace) {
			s += g.Remaining
		}
	}
	return s - b.Debt
}
