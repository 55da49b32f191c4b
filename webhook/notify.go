package webhook

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// Notifier turns balance changes into events. Every id derives from the
// subscription's ledger seq of the change, so seeing a change twice emits
// one event.
type Notifier struct {
	Emitter Emitter
	// Customer names a subscription's customer (the catalog's); nil or an
	// error leaves customer_id out.
	Customer func(ctx context.Context, sub string) (string, error)
	// Ledger reads ledger entries (balance.Store), for ExpiredRange.
	Ledger interface {
		Ledger(ctx context.Context, sub string, fromSeq int64, limit int) ([]balance.Entry, error)
	}
	Log *slog.Logger
	Now func() time.Time
}

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

func (n *Notifier) customer(ctx context.Context, sub string) string {
	if n.Customer == nil {
		return ""
	}
	c, err := n.Customer(ctx, sub)
	if err != nil {
		return ""
	}
	return c
}

func (n *Notifier) event(ctx context.Context, typ, sub string, seq int64, d Data) Event {
	d.Subscription, d.LedgerSeq = sub, seq
	if d.Customer == "" {
		d.Customer = n.customer(ctx, sub)
	}
	return Event{ID: SeqEventID(typ, sub, seq), Type: typ, CreatedAt: n.now(), Data: d}
}

// crossing is the event of a low-balance crossing, if any.
func crossing(c balance.LowChange) string {
	switch c {
	case balance.WentLow:
		return BalanceLow
	case balance.WentOK:
		return BalanceRecovered
	}
	return ""
}

// Batches emits the events of the engine's applied batches: crossings,
// exhaustion (a line that took the balance from above zero to zero or
// below) and the breakage the scripts wrote. The engine calls it before it
// commits the batch's offsets, retrying its errors.
func (n *Notifier) Batches(ctx context.Context, results []balance.BatchResult) error {
	var errs []error
	for i := range results {
		r := &results[i]
		if r.Err != nil || r.LastSeq == 0 {
			continue
		}
		if t := crossing(r.Crossing); t != "" {
			errs = append(errs, n.Emitter.Emit(ctx, n.event(ctx, t, r.Subscription, r.LastSeq, Data{Balance: r.Balance.String()})))
		}
		if exhausted(r) {
			errs = append(errs, n.Emitter.Emit(ctx, n.event(ctx, BalanceExhausted, r.Subscription, r.LastSeq, Data{Balance: r.Balance.String()})))
		}
		errs = append(errs, n.Expired(ctx, r.Subscription, "", r.Entries))
	}
	return errors.Join(errs...)
}

// exhausted reports whether an applied line of r took the balance from
// above zero to zero or below.
func exhausted(r *balance.BatchResult) bool {
	for _, l := range r.Lines {
		if l.Status != balance.Applied {
			continue
		}
		before := l.Balance + l.Overage
		for _, d := range l.Draws {
			before += d.Amount
		}
		if before > 0 && l.Balance <= 0 {
			return true
		}
	}
	return false
}

// Expired emits grant.expired for the expiry entries among entries.
func (n *Notifier) Expired(ctx context.Context, sub, customer string, entries []balance.Entry) error {
	var errs []error
	for _, e := range entries {
		if e.Kind != "expiry" {
			continue
		}
		amt := e.Amount
		if amt < 0 {
			amt = -amt
		}
		errs = append(errs, n.Emitter.Emit(ctx, n.event(ctx, GrantExpired, sub, e.Seq,
			Data{Customer: customer, Grant: e.Grant, Amount: amt.String(), Balance: e.Balance.String()})))
	}
	return errors.Join(errs...)
}

// ExpiredRange emits grant.expired for the expiry entries from..to of sub
// (engine.ExpirySweep.Notify).
func (n *Notifier) ExpiredRange(ctx context.Context, sub, customer string, from, to int64) error {
	if n.Ledger == nil || to < from {
		return nil
	}
	es, err := n.Ledger.Ledger(ctx, sub, from, int(to-from+1))
	if err != nil {
		return err
	}
	return n.Expired(ctx, sub, customer, es)
}

// observeTimeout bounds an emission from ObserveTopUp/ObserveAdjust, which
// have no context of their own.
const observeTimeout = 5 * time.Second

// ObserveTopUp emits topup.created and any crossing of an applied top-up
// (engine.AccountObserver). A failure is logged: the top-up stands.
func (n *Notifier) ObserveTopUp(req balance.TopUpRequest, res balance.ChangeResult, err error) {
	if err != nil || res.Replayed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	errs := []error{n.Emitter.Emit(ctx, n.event(ctx, TopUpCreated, req.Subscription, res.Seq, Data{Amount: req.Amount.String(),
		Balance: res.Balance.String(), Charge: res.Charge.String(), Currency: res.Currency, Grant: res.GrantID}))}
	errs = append(errs, n.crossed(ctx, req.Subscription, res))
	n.logErr("top-up", req.Subscription, errors.Join(errs...))
}

// ObserveAdjust emits the crossing of an applied adjustment, if any.
func (n *Notifier) ObserveAdjust(req balance.AdjustRequest, res balance.ChangeResult, err error) {
	if err != nil || res.Replayed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	n.logErr("adjustment", req.Subscription, n.crossed(ctx, req.Subscription, res))
}

func (n *Notifier) crossed(ctx context.Context, sub string, res balance.ChangeResult) error {
	var errs []error
	if t := crossing(res.Crossing); t != "" {
		errs = append(errs, n.Emitter.Emit(ctx, n.event(ctx, t, sub, res.Seq, Data{Balance: res.Balance.String()})))
	}
	if res.Balance <= 0 && len(res.Draws) > 0 {
		var drawn credit.Amount
		for _, d := range res.Draws {
			drawn += d.Amount
		}
		if res.Balance+drawn > 0 {
			errs = append(errs, n.Emitter.Emit(ctx, n.event(ctx, BalanceExhausted, sub, res.Seq, Data{Balance: res.Balance.String()})))
		}
	}
	return errors.Join(errs...)
}

func (n *Notifier) logErr(what, sub string, err error) {
	if err == nil {
		return
	}
	log := n.Log
	if log == nil {
		log = slog.Default()
	}
	log.Warn("webhooks: emitting the events of a "+what+" failed", "subscription", sub, "err", err)
}
