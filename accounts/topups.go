package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/creditmeter/creditmeter/balance"
)

// PaymentObserver hears of each status a pending top-up takes (webhooks:
// topup.pending, topup.confirmed, topup.failed).
type PaymentObserver interface {
	ObservePending(p balance.PendingTopUp)
}

func (a *Accounts) observePending(p balance.PendingTopUp) {
	if a.Payments != nil {
		a.Payments.ObservePending(p)
	}
}

// CreatePending creates a top-up that waits for its payment (plans with
// payment confirmation); replayed says the key had made it already.
func (a *Accounts) CreatePending(ctx context.Context, req balance.PendingRequest) (balance.PendingTopUp, bool, error) {
	p, replayed, err := a.Store.CreatePending(ctx, req)
	if err == nil && !replayed {
		a.observePending(p)
	}
	return p, replayed, err
}

// PendingTopUp reads a pending top-up (expiring it if due).
func (a *Accounts) PendingTopUp(ctx context.Context, sub, id string) (balance.PendingTopUp, error) {
	p, changed, err := a.Store.ExpirePending(ctx, sub, id)
	if err == nil && changed {
		a.observePending(p)
	}
	return p, err
}

// ConfirmTopUp turns a pending top-up into credits (its payment is
// confirmed) and archives the ledger entry; confirming it again answers
// the same result with Replayed set.
func (a *Accounts) ConfirmTopUp(ctx context.Context, sub, id string) (balance.PendingTopUp, balance.ChangeResult, error) {
	p, res, err := a.Store.ConfirmPending(ctx, sub, id)
	var ended *balance.TopUpEndedError
	if errors.As(err, &ended) {
		a.observePending(ended.TopUp) // an expiry this call found
	}
	if err != nil {
		return p, res, err
	}
	if !res.Replayed {
		if a.Observer != nil {
			a.Observer.ObserveTopUp(balance.TopUpRequest{Key: "pending:" + id, Subscription: sub, Amount: p.Amount}, res, nil)
		}
		a.observePending(p)
	}
	customer, err := a.Store.AccountCustomer(ctx, sub)
	if err != nil {
		return p, res, err
	}
	return p, res, notArchived(res, a.exportChange(ctx, sub, customer, res.Seq))
}

// FailTopUp ends a pending top-up whose payment failed.
func (a *Accounts) FailTopUp(ctx context.Context, sub, id, reason string) (balance.PendingTopUp, error) {
	p, changed, err := a.Store.FailPending(ctx, sub, id, reason)
	if err == nil && changed {
		a.observePending(p)
	}
	return p, err
}

// PendingSweep expires pending top-ups past their expiry (giving back
// their reservation of the month's purchase limit, topup.failed with
// reason expired) and completes confirmations a crash interrupted. Run it
// under a lease; every step is idempotent anyway.
type PendingSweep struct {
	Accounts *Accounts
	Log      *slog.Logger
}

// Once sweeps up to 1000 due top-ups; it returns how many it ended.
func (s *PendingSweep) Once(ctx context.Context) (int, error) {
	due, err := s.Accounts.Store.DuePending(ctx, 1000)
	if err != nil {
		return 0, fmt.Errorf("pending top-up sweep: %w", err)
	}
	var errs []error
	n := 0
	for _, d := range due {
		sub, id := d[0], d[1]
		p, err := s.Accounts.PendingTopUp(ctx, sub, id)
		switch {
		case errors.Is(err, balance.ErrTopUpNotFound) || errors.Is(err, balance.ErrUnknownSubscription):
			errs = append(errs, s.Accounts.Store.DropDue(ctx, sub, id))
		case err != nil:
			errs = append(errs, err)
		case p.Status == balance.TopUpConfirming:
			if _, _, err := s.Accounts.ConfirmTopUp(ctx, sub, id); err != nil {
				errs = append(errs, fmt.Errorf("completing the confirmation of top-up %s of %s: %w", id, sub, err))
			} else {
				n++
			}
		case p.Status == balance.TopUpExpired:
			n++
		}
	}
	return n, errors.Join(errs...)
}

// Run sweeps every interval until ctx ends.
func (s *PendingSweep) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Once(ctx); err != nil && ctx.Err() == nil && s.Log != nil {
			s.Log.Warn("pending top-up sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PendingTopUps lists the subscription's pending (and ended) top-ups.
func (a *Accounts) PendingTopUps(ctx context.Context, sub string) ([]balance.PendingTopUp, error) {
	return a.Store.PendingTopUps(ctx, sub)
}
