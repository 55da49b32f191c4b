package webhook

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// Events of top-ups that wait for their payment (accounts.PaymentObserver).
const (
	TopUpPending   = "topup.pending"   // a top-up waits for its payment
	TopUpConfirmed = "topup.confirmed" // its payment was confirmed: credits bought (topup.created follows)
	TopUpFailed    = "topup.failed"    // its payment failed, or it expired unpaid (reason)
)

func init() { Types = append(Types, TopUpPending, TopUpConfirmed, TopUpFailed) }

// ObservePending drains the notifications of a pending top-up's new status
// (accounts.PaymentObserver): topup.lua records them with the change, so a
// node that dies first leaves them to Sweep.
func (n *Notifier) ObservePending(p balance.PendingTopUp) {
	n.observe("pending top-up", p.Subscription)
}

// pendingTypes maps a pending top-up's note to its event type.
var pendingTypes = map[byte]string{balance.NoteTopUpPending: TopUpPending, balance.NoteTopUpConfirmed: TopUpConfirmed,
	balance.NoteTopUpFailed: TopUpFailed, balance.NoteTopUpExpired: TopUpFailed}

// pendingEvent is the event of a pending top-up's note; its id derives
// from the top-up and the type, so a repeat emits one event.
func (n *Notifier) pendingEvent(ctx context.Context, sub, customer string, nt balance.Note) (Event, bool, error) {
	typ := pendingTypes[nt.Kind]
	if typ == "" {
		return Event{}, false, nil
	}
	d := Data{Subscription: sub, Customer: customer, TopUp: nt.Ref, Amount: nt.Amount.String(), LedgerSeq: nt.Seq}
	if r, ok := n.Notes.(interface {
		PendingTopUp(ctx context.Context, sub, id string) (balance.PendingTopUp, error)
	}); ok {
		p, err := r.PendingTopUp(ctx, sub, nt.Ref)
		if err != nil && !errors.Is(err, balance.ErrTopUpNotFound) {
			return Event{}, false, err
		}
		d.Charge, d.Currency = p.Charge.String(), p.Currency
		switch nt.Kind { // the record may have moved on since the note
		case balance.NoteTopUpConfirmed:
			d.Grant = p.GrantID
			if e, ok := n.rechargeMade(ctx, sub, customer, p.Key, balance.Note{Seq: p.Seq, Amount: p.Amount}); ok {
				if err := n.Emitter.Emit(ctx, e); err != nil {
					return Event{}, false, err
				}
			}
		case balance.NoteTopUpFailed:
			d.Reason = p.Reason
		}
	}
	if nt.Kind == balance.NoteTopUpExpired {
		d.Reason = "expired"
	}
	return Event{ID: EventID(typ, sub, nt.Ref), Type: typ, CreatedAt: n.now(), Data: d}, true, nil
}

// Auto-recharge events (accounts.Recharger.Notify).
const (
	AutoRechargeSucceeded = "auto_recharge.succeeded" // a crossing's top-up was bought
	AutoRechargeFailed    = "auto_recharge.failed"    // an attempt failed (payment declined, top-up refused); retried
)

func init() { Types = append(Types, AutoRechargeSucceeded, AutoRechargeFailed) }

// ObserveRecharge emits the event of an auto-recharge attempt; its id
// derives from the crossing and the attempt (failed) or the crossing
// alone (succeeded: one per crossing, and the top-up's note cannot tell
// the attempt of an immediate payment, whose key is the crossing's).
func (n *Notifier) ObserveRecharge(sub string, st balance.RechargeState, amount credit.Amount) {
	typ := AutoRechargeSucceeded
	if st.Status != "done" {
		typ = AutoRechargeFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	d := Data{Subscription: sub, Customer: n.customer(ctx, sub), Amount: amount.String(), LedgerSeq: st.TopUpSeq, Reason: st.LastError}
	id := EventID(typ, sub, strconv.FormatInt(st.Crossing, 10), strconv.Itoa(st.Attempts))
	if typ == AutoRechargeSucceeded {
		id = EventID(typ, sub, strconv.FormatInt(st.Crossing, 10))
	}
	e := Event{ID: id, Type: typ, CreatedAt: n.now(), Data: d}
	n.logErr("auto-recharge", sub, n.Emitter.Emit(ctx, e))
}

// rechargeMade is the auto_recharge.succeeded event of an auto-recharge's
// top-up, told from its durable note: a recharger that died between the
// top-up and its own telling (the next pass only replays it) loses
// nothing. The id is the one ObserveRecharge gives, from the crossing the
// top-up's key carries ("auto-recharge:G" or "…#n").
func (n *Notifier) rechargeMade(_ context.Context, sub, customer, key string, nt balance.Note) (Event, bool) {
	rest, ok := strings.CutPrefix(key, "auto-recharge:")
	if !ok {
		return Event{}, false
	}
	crossing, _, _ := strings.Cut(rest, "#")
	if _, err := strconv.ParseInt(crossing, 10, 64); err != nil {
		return Event{}, false
	}
	d := Data{Subscription: sub, Customer: customer, Amount: nt.Amount.String(), LedgerSeq: nt.Seq}
	return Event{ID: EventID(AutoRechargeSucceeded, sub, crossing), Type: AutoRechargeSucceeded, CreatedAt: n.now(), Data: d}, true
}
