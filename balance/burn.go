package balance

import (
	"sort"

	"github.com/creditmeter/creditmeter/credit"
)

// This file is the burn-down logic in pure Go. The Lua scripts are the
// source of truth in production; this mirror computes Balance and Check
// from a snapshot, and tests cross-check the scripts against it.

// never is the stored expiry of a grant that does not expire.
const never int64 = 0

// GrantType is the kind of a grant bucket.
type GrantType string

// Grant types.
const (
	Promotional GrantType = "promotional"
	Purchased   GrantType = "purchased"
	Adjustment  GrantType = "adjustment"
)

// rank orders grants of equal expiry: free credits first, purchased last,
// because purchased credits carry a cost basis (refundable money).
func (t GrantType) rank() int {
	switch t {
	case Promotional:
		return 0
	case Adjustment:
		return 1
	default:
		return 2
	}
}

func (t GrantType) valid() bool { return t == Promotional || t == Purchased || t == Adjustment }

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
	if ra, rb := a.Type.rank(), b.Type.rank(); ra != rb {
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

// draw takes up to amount from grants eligible at time at in burn-down
// order (Grants must be sorted) and returns the draws and what is left.
func (b *book) draw(at int64, amount credit.Amount) ([]Draw, credit.Amount) {
	var draws []Draw
	left := amount
	for _, g := range b.Grants {
		if left == 0 {
			break
		}
		if g.eligible(at, b.Grace) {
			take := min(g.Remaining, left)
			g.Remaining -= take
			left -= take
			draws = append(draws, Draw{Grant: g.ID, Amount: take})
		}
	}
	return draws, left
}

// sweep zeroes the remainders of grants expired at or before now-grace and
// returns them as breakage.
func (b *book) sweep(now, grace int64) []Draw {
	var out []Draw
	for _, g := range b.Grants {
		if g.Expires != never && g.Expires+grace <= now && g.Remaining > 0 {
			out = append(out, Draw{Grant: g.ID, Amount: g.Remaining})
			g.Remaining = 0
		}
	}
	return out
}

// settle pays debt from grants eligible now.
func (b *book) settle(now int64) {
	if b.Debt > 0 {
		_, b.Debt = b.draw(now, b.Debt)
	}
}

// drawTime is the time a usage line draws at: its timestamp, clamped to the
// grace window behind now and never in the future.
func drawTime(ts, now, grace int64) int64 {
	return max(min(ts, now), now-grace)
}

// use applies one usage line of credits at timestamp ts under policy.
func (b *book) use(ts, now, grace int64, credits credit.Amount, policy Policy) LineResult {
	draws, left := b.draw(drawTime(ts, now, grace), credits)
	var over credit.Amount
	if left > 0 && policy == Overage {
		over = min(left, b.balance()+credit.MaxAmount, credit.MaxAmount-b.Debt)
		over = max(over, 0)
		b.Debt += over
	}
	return LineResult{Status: Applied, Draws: draws, Unfunded: left - over, Overage: over, Balance: b.balance()}
}
