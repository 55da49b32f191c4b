package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
)

// Accounts connects the catalog's subscriptions to balance accounts and
// copies every ledger entry they write to the archive. It implements the
// API's Ledger (api.Ledger) and the write paths of top-ups and adjustments.
type Accounts struct {
	Store   *balance.Store
	Archive Archive
	// Observer, when set, hears of every top-up and adjustment (metrics).
	Observer AccountObserver
	// Payments, when set, hears of pending top-ups' statuses (webhooks).
	Payments PaymentObserver
	// Repair, when set, repairs a subscription whose entries the archive
	// refuses for reusing its sequence numbers (Redis lost writes).
	Repair Repairer
}

// OpenSubscription opens or updates the subscription's account from its
// terms and grants its included credits once (the grant's key is fixed per
// subscription), then archives the ledger entries written.
func (a *Accounts) OpenSubscription(ctx context.Context, t rating.AccountTerms, g *rating.Grant) error {
	spec, err := AccountSpec(t)
	if err != nil {
		return err
	}
	if _, err := a.Store.OpenAccount(ctx, spec); err != nil {
		return err
	}
	if g == nil || g.Amount == 0 {
		return nil
	}
	req := balance.GrantRequest{
		Key: "included", Subscription: t.SubscriptionID, Type: g.Type, Amount: g.Amount,
		EffectiveAt: g.EffectiveAt, CostBasis: g.CostBasis.Amount, Reason: "included credits",
		Charge: g.Charge.Amount, Currency: g.Charge.Currency,
	}
	if g.ExpiresAt != nil {
		req.ExpiresAt = *g.ExpiresAt
	}
	res, err := a.Store.Grant(ctx, req)
	if err != nil {
		return err
	}
	return notArchived(res, a.Export(ctx, t.SubscriptionID, t.CustomerID, res.Seq, res.Seq))
}

// NotArchivedError is a balance change Redis stored whose ledger entry the
// archive did not take; the same request again (same key) archives it.
type NotArchivedError struct {
	Seq     int64
	Balance credit.Amount
	Err     error
}

func (e *NotArchivedError) Error() string {
	return fmt.Sprintf("the balance change is stored (balance %s, seq %d) but its archive entry is not: %v", e.Balance, e.Seq, e.Err)
}

func (e *NotArchivedError) Unwrap() error { return e.Err }

// NotArchived says what was stored (the API's error reads it).
func (e *NotArchivedError) NotArchived() (int64, credit.Amount) { return e.Seq, e.Balance }

func notArchived(res balance.ChangeResult, err error) error {
	var undone *UndoneError
	if err == nil || errors.As(err, &undone) {
		return err
	}
	return &NotArchivedError{Seq: res.Seq, Balance: res.Balance, Err: err}
}

// Export archives the ledger entries from..to of a subscription. It is
// idempotent: the archive collapses repeated entries.
func (a *Accounts) Export(ctx context.Context, sub, customer string, from, to int64) error {
	if from <= 0 || to < from {
		return nil
	}
	entries, err := a.Store.Ledger(ctx, sub, from, int(to-from+1))
	if err != nil {
		return err
	}
	rows := make([]archive.LedgerRow, 0, len(entries))
	for _, en := range entries {
		if en.Seq > to {
			break
		}
		rows = append(rows, LedgerRow(sub, customer, en))
	}
	err = a.Archive.WriteLedger(ctx, rows)
	if !errors.Is(err, archive.ErrLedgerConflict) || a.Repair == nil {
		return err
	}
	// Redis lost writes and this change reused an archived seq: bring the
	// subscription back to the archive's truth, which undoes the change and
	// frees its idempotency key, so the caller's retry applies it anew.
	if _, _, rerr := a.Repair.Repair(ctx, sub); rerr != nil {
		return errors.Join(err, rerr)
	}
	return &UndoneError{Err: err}
}

// UndoneError: Redis had lost acknowledged writes, so the change was made
// on a stale balance; the subscription was repaired from the archive and
// the change undone. The same request again (same key) makes it anew.
type UndoneError struct{ Err error }

func (e *UndoneError) Error() string {
	return fmt.Sprintf("the balance store had lost writes; the subscription was repaired and this change undone: send it again with the same idempotency key (%v)", e.Err)
}

// Unwrap makes the error retryable (balance.ErrUnavailable).
func (e *UndoneError) Unwrap() []error { return []error{balance.ErrUnavailable, e.Err} }

// AccountSpec maps the catalog's terms to the balance account.
func AccountSpec(t rating.AccountTerms) (balance.AccountSpec, error) {
	s := balance.AccountSpec{
		Subscription: t.SubscriptionID, Customer: t.CustomerID, Currency: t.Currency, CreditValue: t.CreditValue,
	}
	switch t.Overage {
	case credit.Overage, credit.Unfunded:
		s.Policy = t.Overage
	case "":
		s.Policy = credit.Unfunded
	default:
		return s, fmt.Errorf("%w: overage policy %q", balance.ErrInvalid, t.Overage)
	}
	if t.LowCredits != nil {
		s.LowThreshold = *t.LowCredits
	}
	if t.LowPercent != nil {
		p := t.LowPercent.Round(0)
		if !p.Equal(*t.LowPercent) || p.IntPart() < 0 || p.IntPart() > 100 {
			return s, fmt.Errorf("%w: low-balance percent %s must be a whole number 0-100", balance.ErrInvalid, t.LowPercent)
		}
		s.LowPercent = int(p.IntPart())
	}
	if t.MinPurchase != nil {
		s.TopUpMin = *t.MinPurchase
	}
	if t.MaxPurchase != nil {
		s.TopUpMax = *t.MaxPurchase
	}
	s.DebtLimit = t.DebtLimit
	if ar := t.AutoRecharge; ar != nil {
		s.AutoRechargeThreshold, s.AutoRechargeAmount = ar.Threshold, ar.Amount
	}
	if pl := t.PurchaseLimit; pl != nil {
		if pl.Credits != nil {
			s.PurchaseLimitCredits = *pl.Credits
		}
		if pl.Charge != nil {
			// whole minor units: a limit of 99.999 USD allows 99.99
			s.PurchaseLimitCharge = pl.Charge.RoundFloor(balance.MinorUnits(t.Currency))
		}
	}
	return s, nil
}

// Balance is the subscription's balance.
func (a *Accounts) Balance(ctx context.Context, sub string) (balance.BalanceView, error) {
	return a.Store.Balance(ctx, sub)
}

// Check answers whether sub may spend amount now.
func (a *Accounts) Check(ctx context.Context, sub string, amount credit.Amount) (balance.CheckResult, error) {
	return a.Store.Check(ctx, sub, amount)
}

// Ledger reads the subscription's ledger from fromSeq.
func (a *Accounts) Ledger(ctx context.Context, sub string, fromSeq int64, limit int) ([]balance.Entry, error) {
	return a.Store.Ledger(ctx, sub, fromSeq, limit)
}

// TopUp buys credits and archives the ledger entry. A retry with the same key
// replays the top-up and archives the entry again (harmless), which heals an
// archive failure of the first attempt.
func (a *Accounts) TopUp(ctx context.Context, req balance.TopUpRequest, customer string) (balance.ChangeResult, error) {
	res, err := a.Store.TopUp(ctx, req)
	if a.Observer != nil {
		a.Observer.ObserveTopUp(req, res, err)
	}
	if err != nil {
		return res, err
	}
	return res, notArchived(res, a.exportChange(ctx, req.Subscription, customer, res.Seq))
}

// Adjust adds or deducts credits and archives the ledger entry.
func (a *Accounts) Adjust(ctx context.Context, req balance.AdjustRequest, customer string) (balance.ChangeResult, error) {
	res, err := a.Store.Adjust(ctx, req)
	if a.Observer != nil {
		a.Observer.ObserveAdjust(req, res, err)
	}
	if err != nil {
		return res, err
	}
	return res, notArchived(res, a.exportChange(ctx, req.Subscription, customer, res.Seq))
}
