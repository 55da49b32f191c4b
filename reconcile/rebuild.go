package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// ErrInexact: the archive cannot say how much is left in each grant (an
// admin deduction or a debt settlement drew from grants no row names).
// Rebuild then needs Force, which takes the unknown draws from the grants in
// burn-down order.
var ErrInexact = errors.New("reconcile: per-grant remainders are not exact in the archive")

// RebuildOptions configure Rebuild.
type RebuildOptions struct {
	// Expiry gives a grant's expiry time, which the archive does not hold
	// (zero: never). Nil means every grant never expires.
	Expiry func(g GrantState) time.Time
	// Force rebuilds an inexact state (see ErrInexact).
	Force bool
}

// Rebuild restores a subscription's lost Redis account from the archive:
// its grants with their remainders, debt, unfunded total, the ledger's next
// sequence number and the offset watermarks. spec carries the plan's terms
// (from the catalog). The rebuilt balance equals the archived ledger's sum.
func Rebuild(ctx context.Context, store *balance.Store, conn driver.Conn, spec balance.AccountSpec, o RebuildOptions) (balance.ChangeResult, State, error) {
	st, err := ArchiveState(ctx, conn, spec.Subscription)
	if err != nil {
		return balance.ChangeResult{}, st, err
	}
	if st.LastSeq == 0 {
		return balance.ChangeResult{}, st, fmt.Errorf("reconcile: %s has no ledger in the archive", spec.Subscription)
	}
	if !st.Exact && !o.Force {
		return balance.ChangeResult{}, st, fmt.Errorf("%w: %s", ErrInexact, spec.Subscription)
	}
	if spec.Customer == "" {
		spec.Customer = st.Customer
	}
	r, err := restoreSpec(st, spec, o)
	if err != nil {
		return balance.ChangeResult{}, st, err
	}
	res, err := store.Restore(ctx, r)
	return res, st, err
}

func restoreSpec(st State, spec balance.AccountSpec, o RebuildOptions) (balance.RestoreSpec, error) {
	r := balance.RestoreSpec{Account: spec, LastSeq: st.LastSeq, Watermarks: st.Watermarks}
	var err error
	if r.Unfunded, err = credit.FromDecimal(st.Unfunded); err != nil {
		return r, err
	}
	debt := st.Debt
	if !st.Exact {
		debt = decimal.Max(decimal.Zero, st.Balance.Neg())
	}
	if r.Debt, err = credit.FromDecimal(debt); err != nil {
		return r, err
	}
	for _, g := range st.Grants {
		rg := balance.RestoreGrant{ID: g.ID, Type: balance.GrantType(g.Type), EffectiveAt: g.Created}
		if rg.Amount, err = credit.FromDecimal(g.Amount); err != nil {
			return r, err
		}
		if rg.Remaining, err = credit.FromDecimal(g.Remaining); err != nil {
			return r, err
		}
		if o.Expiry != nil {
			rg.ExpiresAt = o.Expiry(g)
		}
		r.Grants = append(r.Grants, rg)
	}
	// The remainders must make the balance: balance = remainders − debt.
	want, err := credit.FromDecimal(st.Balance.Add(debt))
	if err != nil {
		return r, err
	}
	var have credit.Amount
	for _, g := range r.Grants {
		have += g.Remaining
	}
	if have < want {
		return r, fmt.Errorf("reconcile: %s: the grants hold %s, less than the balance plus debt %s", spec.Subscription, have, want)
	}
	if excess := have - want; excess > 0 {
		// Unknown draws: take them as the burn-down order would have.
		order := make([]int, len(r.Grants))
		for i := range order {
			order[i] = i
		}
		rank := map[balance.GrantType]int{balance.Promotional: 0, balance.Adjustment: 1, balance.Purchased: 2}
		never := time.Unix(1<<40, 0)
		exp := func(g balance.RestoreGrant) time.Time {
			if g.ExpiresAt.IsZero() {
				return never
			}
			return g.ExpiresAt
		}
		sort.SliceStable(order, func(a, b int) bool {
			ga, gb := r.Grants[order[a]], r.Grants[order[b]]
			if !exp(ga).Equal(exp(gb)) {
				return exp(ga).Before(exp(gb))
			}
			if rank[ga.Type] != rank[gb.Type] {
				return rank[ga.Type] < rank[gb.Type]
			}
			return ga.EffectiveAt.Before(gb.EffectiveAt)
		})
		for _, i := range order {
			take := min(excess, r.Grants[i].Remaining)
			r.Grants[i].Remaining -= take
			excess -= take
		}
	}
	return r, nil
}
