package webhook

import (
	"context"
	"strconv"

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

// ObservePending emits the event of a pending top-up's new status; its id
// derives from the top-up and the status, so a repeat emits one event.
func (n *Notifier) ObservePending(p balance.PendingTopUp) {
	typ := map[string]string{balance.TopUpPending: TopUpPending, balance.TopUpConfirmed: TopUpConfirmed,
		balance.TopUpFailed: TopUpFailed, balance.TopUpExpired: TopUpFailed}[p.Status]
	if typ == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	d := Data{Subscription: p.Subscription, Customer: n.customer(ctx, p.Subscription), TopUp: p.ID, Amount: p.Amount.String(),
		Charge: p.Charge.String(), Currency: p.Currency, Grant: p.GrantID, LedgerSeq: p.Seq, Reason: p.Reason}
	if p.Status == balance.TopUpExpired {
		d.Reason = "expired"
	}
	e := Event{ID: EventID(typ, p.Subscription, p.ID), Type: typ, CreatedAt: n.now(), Data: d}
	n.logErr("pending top-up", p.Subscription, n.Emitter.Emit(ctx, e))
}

// Auto-recharge events (accounts.Recharger.Notify).
const (
	AutoRechargeSucceeded = "auto_recharge.succeeded" // a crossing's top-up was bought
	AutoRechargeFailed    = "auto_recharge.failed"    // an attempt failed (payment declined, top-up refused); retried
)

func init() { Types = append(Types, AutoRechargeSucceeded, AutoRechargeFailed) }

// ObserveRecharge emits the event of an auto-recharge attempt; its id
// derives from the crossing and the attempt.
func (n *Notifier) ObserveRecharge(sub string, st balance.RechargeState, amount credit.Amount) {
	typ := AutoRechargeSucceeded
	if st.Status != "done" {
		typ = AutoRechargeFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	d := Data{Subscription: sub, Customer: n.customer(ctx, sub), Amount: amount.String(), LedgerSeq: st.TopUpSeq, Reason: st.LastError}
	e := Event{ID: EventID(typ, sub, strconv.FormatInt(st.Crossing, 10), strconv.Itoa(st.Attempts)), Type: typ, CreatedAt: n.now(), Data: d}
	n.logErr("auto-recharge", sub, n.Emitter.Emit(ctx, e))
}
