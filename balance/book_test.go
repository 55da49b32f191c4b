package balance

import "github.com/creditmeter/creditmeter/credit"

// The write half of the Go mirror of the Lua scripts (draw, sweep, settle,
// use): only tests run it, to cross-check apply.lua and expire.lua.

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

// use applies one usage line of credits at timestamp ts under policy and
// an optional debt limit (debtlimit.lua).
func (b *book) use(ts, now, grace int64, credits credit.Amount, policy Policy, limit *credit.Amount) LineResult {
	draws, left := b.draw(drawTime(ts, now, grace), credits)
	var over credit.Amount
	if left > 0 && policy == Overage {
		over = min(left, b.balance()+credit.MaxAmount, credit.MaxAmount-b.Debt)
		if limit != nil {
			over = min(over, max(*limit-b.Debt, 0))
		}
		over = max(over, 0)
		b.Debt += over
	}
	return LineResult{Status: Applied, Draws: draws, Unfunded: left - over, Overage: over, Balance: b.balance()}
}
