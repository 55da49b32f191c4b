package accounts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
)

// Ending settles the remaining credits of ended subscriptions by their
// plan's on_end rule (rating.EndPolicy), once their books close: at end +
// grace window no event can charge them any more (the rater dead-letters
// later ones subscription_ended), so their remainders are final.
//
//   - carry_over with a successor (a plan change): every remaining grant is
//     granted to the successor with its type, expiry and cost basis,
//     effective at the successor's start (key "carry:<old>:<grant>"), then
//     the old subscription is debited the total in one adjustment entry
//     (actor "system", reason naming the successor);
//   - expire (or carry_over without a successor): the remainders are
//     debited in one adjustment entry, reason "expired at subscription
//     end"; with refund_purchased the entry records the refund (the
//     purchased remainder × cost basis, in the subscription's currency)
//     as negative money, a billable credit line on the invoice.
//
// Grants go to the successor before the debit, each idempotent by key and
// content, so a crash in between repeats the same grants; the debit's key
// holds the amount, so a change after it (a top-up of an ended
// subscription) is settled by the next sweep. Debt is settled from the
// grants by every write first, so an ended subscription's unsettled debt
// stays on its invoice.
type Ending struct {
	Accounts *Accounts
	Catalog  EndCatalog
	Grace    time.Duration
	Now      func() time.Time // nil: time.Now

	mu   sync.Mutex
	done map[string]bool // settled with nothing left, not checked again
}

// EndCatalog is what Ending reads of the catalog (catalogstore.Store).
type EndCatalog interface {
	Subscriptions(ctx context.Context) ([]*rating.Subscription, error)
	Subscription(ctx context.Context, id string) (*rating.Subscription, error)
	Plan(ctx context.Context, id string) (*rating.Plan, error)
}

// Once settles every subscription whose books have closed; it returns how
// many it moved or expired credits of.
func (e *Ending) Once(ctx context.Context) (int, error) {
	now := time.Now()
	if e.Now != nil {
		now = e.Now()
	}
	subs, err := e.Catalog.Subscriptions(ctx)
	if err != nil {
		return 0, fmt.Errorf("subscription ends: %w", err)
	}
	n := 0
	var errs []error
	for _, s := range subs {
		if s.EndAt == nil || now.Before(s.EndAt.Add(e.Grace)) || e.settled(s.ID) {
			continue
		}
		did, err := e.Settle(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("subscription ends: %s: %w", s.ID, err))
		} else if !did {
			e.mu.Lock()
			if e.done == nil {
				e.done = map[string]bool{}
			}
			e.done[s.ID] = true
			e.mu.Unlock()
		}
		if did {
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (e *Ending) settled(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done[id]
}

// Settle moves or expires the remaining credits of ended subscription s; it
// reports whether there were any.
func (e *Ending) Settle(ctx context.Context, s *rating.Subscription) (bool, error) {
	a := e.Accounts
	r, err := a.Store.Expire(ctx, s.ID)
	if errors.Is(err, balance.ErrUnknownSubscription) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if r.FirstSeq > 0 { // breakage written just now: archive it, as the expiry sweep does
		if err := a.Export(ctx, s.ID, s.CustomerID, r.FirstSeq, r.Seq); err != nil {
			return false, err
		}
	}
	v, err := a.Balance(ctx, s.ID)
	if err != nil {
		return false, err
	}
	var total, purchased credit.Amount
	refund := decimal.Zero
	for _, g := range v.Grants {
		total += g.Remaining
		if g.Type == balance.Purchased {
			purchased += g.Remaining
			if cb, err := decimal.NewFromString(g.CostBasis); err == nil {
				refund = refund.Add(g.Remaining.Decimal().Mul(cb))
			}
		}
	}
	if total <= 0 {
		return false, nil
	}
	policy := rating.EndPolicy{Remaining: rating.Expire}
	if p, err := e.Catalog.Plan(ctx, s.PlanID); err == nil {
		policy = p.Prepaid.EndPolicy()
	} else {
		return false, err
	}
	reason := "expired at subscription end"
	var note string
	if policy.Remaining == rating.CarryOver && s.ReplacedBy != "" {
		next, err := e.Catalog.Subscription(ctx, s.ReplacedBy)
		if err != nil {
			return false, err
		}
		for _, g := range v.Grants {
			if g.Remaining <= 0 {
				continue
			}
			eff := next.StartAt
			if g.EffectiveAt.After(eff) {
				eff = g.EffectiveAt
			}
			if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(eff) {
				continue // expires before it could be used: debited with the rest
			}
			cb, _ := decimal.NewFromString(g.CostBasis)
			req := balance.GrantRequest{Key: "carry:" + s.ID + ":" + g.ID, Subscription: next.ID, Type: g.Type, Amount: g.Remaining,
				EffectiveAt: eff, ExpiresAt: g.ExpiresAt, CostBasis: cb, Reason: archive.CarriedOverPrefix + s.ID + " (grant " + g.ID + ")",
				CarryOver: true}
			res, err := a.Store.Grant(ctx, req)
			if err != nil {
				return false, fmt.Errorf("carrying grant %s to %s: %w", g.ID, next.ID, err)
			}
			if err := a.exportChange(ctx, next.ID, next.CustomerID, res.Seq); err != nil {
				return false, err
			}
		}
		reason = "carried over to " + next.ID + " (plan change)"
	} else if policy.RefundPurchased && purchased > 0 {
		note = fmt.Sprintf("refund of %s purchased credits: %s %s", purchased, refund.StringFixed(2), s.Currency)
		reason = "expired at subscription end; purchased credits refunded"
	}
	req := balance.AdjustRequest{Key: fmt.Sprintf("end:%s:%d", s.ID, total), Subscription: s.ID, Amount: -total,
		Reason: reason, Actor: "system", Note: note, Force: true}
	if note != "" {
		req.Charge, req.Currency = refund.Neg(), s.Currency
	}
	_, err = a.Adjust(ctx, req, s.CustomerID)
	return true, err
}
