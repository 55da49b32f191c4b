package webhook

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/creditmeter/creditmeter/balance"
)

// Notifier turns balance changes into events. The balance scripts record
// what a change should tell (balance.Note) in the subscription's account,
// atomically with the change; the notifier drains those records into the
// outbox: right after a node's own writes (Batches, ObserveTopUp,
// ObserveAdjust), and in a sweep over every subscription (Sweep) for what
// a node that died left. Every id derives from the subscription, the kind
// and the ledger seq of the change, so a record emitted twice is one event.
type Notifier struct {
	Emitter Emitter
	// Notes reads and acknowledges the recorded notifications (balance.Store).
	Notes interface {
		Notes(ctx context.Context, subs []string) ([]balance.PendingNotes, error)
		AckNotes(ctx context.Context, p balance.PendingNotes) error
	}
	// Customer names a subscription's customer (the catalog's); nil or an
	// error leaves customer_id out.
	Customer func(ctx context.Context, sub string) (string, error)
	// Ledger reads ledger entries (balance.Store): ExpiredRange, and a
	// top-up's charge.
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

// Batches drains the notifications of the engine's applied batches that
// may have some: those that crossed the low-balance threshold, reached
// zero, wrote breakage, or were redelivered (the node that applied
// them first may have died before its drain; redelivered lines come
// first). The engine calls it before it commits the batch's offsets,
// retrying its errors; Sweep finds anything else left.
func (n *Notifier) Batches(ctx context.Context, results []balance.BatchResult) error {
	var subs []string
	for i := range results {
		r := &results[i]
		redelivered := len(r.Lines) > 0 && r.Lines[0].Status == balance.DuplicateOffset
		if r.Err == nil && (r.Crossing != balance.NoChange || (r.Balance <= 0 && exhausted(r)) || redelivered || hasExpiry(r.Entries)) {
			subs = append(subs, r.Subscription)
		}
	}
	return n.Drain(ctx, subs)
}

// exhausted reports whether an applied line of r took the balance from
// above zero to zero or below (an account in debt drains nothing more).
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

func hasExpiry(es []balance.Entry) bool {
	for _, e := range es {
		if e.Kind == "expiry" {
			return true
		}
	}
	return false
}

// Drain emits the recorded notifications of subs and acknowledges them
// once emitted; a failed emission leaves them for the next drain.
func (n *Notifier) Drain(ctx context.Context, subs []string) error {
	if len(subs) == 0 || n.Notes == nil {
		return nil
	}
	ps, err := n.Notes.Notes(ctx, subs)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		if err := n.emitNotes(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, n.Notes.AckNotes(ctx, p))
	}
	return errors.Join(errs...)
}

// Sweep drains every subscription of subs that has notifications left
// (serve runs it every few seconds under a lease): the repair of a node
// that died between a change and its emission.
func (n *Notifier) Sweep(ctx context.Context, subs []string) (int, error) {
	if n.Notes == nil {
		return 0, nil
	}
	ps, err := n.Notes.Notes(ctx, subs)
	if err != nil || len(ps) == 0 {
		return 0, err
	}
	pending := make([]string, len(ps))
	for i, p := range ps {
		pending[i] = p.Subscription
	}
	return len(ps), n.Drain(ctx, pending)
}

// noteTypes maps a note's kind to its event type.
var noteTypes = map[byte]string{balance.NoteLow: BalanceLow, balance.NoteRecovered: BalanceRecovered,
	balance.NoteExhausted: BalanceExhausted, balance.NoteExpired: GrantExpired, balance.NoteTopUp: TopUpCreated}

func (n *Notifier) emitNotes(ctx context.Context, p balance.PendingNotes) error {
	var errs []error
	for _, nt := range p.Notes {
		if e, ok, err := n.pendingEvent(ctx, p.Subscription, p.Customer, nt); ok || err != nil {
			errs = append(errs, err)
			if ok {
				errs = append(errs, n.Emitter.Emit(ctx, e))
			}
			continue
		}
		typ := noteTypes[nt.Kind]
		if typ == "" {
			continue // a kind of a newer version: nothing to say here
		}
		d := Data{Customer: p.Customer, Balance: nt.Balance.String()}
		switch nt.Kind {
		case balance.NoteExpired:
			d.Grant, d.Amount = nt.Ref, nt.Amount.String()
		case balance.NoteTopUp:
			d.Grant, d.Amount = nt.Ref, nt.Amount.String()
			if n.Ledger != nil {
				es, err := n.Ledger.Ledger(ctx, p.Subscription, nt.Seq, 1)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if len(es) == 1 && es[0].Seq == nt.Seq {
					d.Charge, d.Currency = es[0].Fields["charge"], es[0].Fields["currency"]
					if e, ok := n.rechargeMade(ctx, p.Subscription, p.Customer, es[0].Fields["key"], nt); ok {
						errs = append(errs, n.Emitter.Emit(ctx, e))
					}
				}
			}
		}
		errs = append(errs, n.Emitter.Emit(ctx, n.event(ctx, typ, p.Subscription, nt.Seq, d)))
	}
	return errors.Join(errs...)
}

// ExpiredRange emits the notifications of an expiry sweep's Expire of sub
// (engine.ExpirySweep.Notify): its grant.expired events, recorded by the
// script with the breakage.
func (n *Notifier) ExpiredRange(ctx context.Context, sub, _ string, _, _ int64) error {
	return n.Drain(ctx, []string{sub})
}

// observeTimeout bounds an emission from ObserveTopUp/ObserveAdjust, which
// have no context of their own.
const observeTimeout = 5 * time.Second

// ObserveTopUp drains the notifications of a top-up (topup.created, a
// crossing), replays included: the retry of a request whose node died
// before its emission emits what it left (engine.AccountObserver). A
// failure is logged: the top-up stands, and Sweep emits it later.
func (n *Notifier) ObserveTopUp(req balance.TopUpRequest, _ balance.ChangeResult, _ error) {
	n.observe("top-up", req.Subscription)
}

// ObserveAdjust drains the notifications of an adjustment (a crossing,
// balance.exhausted).
func (n *Notifier) ObserveAdjust(req balance.AdjustRequest, _ balance.ChangeResult, _ error) {
	n.observe("adjustment", req.Subscription)
}

// observe drains after a refusal too: a refused change may have written
// the breakage of its sweep.
func (n *Notifier) observe(what, sub string) {
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	n.logErr(what, sub, n.Drain(ctx, []string{sub}))
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
