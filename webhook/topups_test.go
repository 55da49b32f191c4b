package webhook

import (
	"context"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

type capture struct{ events []Event }

func (c *capture) Emit(_ context.Context, e Event) error { c.events = append(c.events, e); return nil }

// Each status of a pending top-up and each auto-recharge attempt is one
// event with a stable id (a repeat emits the same id; the outbox keeps one).
func TestPendingAndRechargeEvents(t *testing.T) {
	c := &capture{}
	n := &Notifier{Emitter: c, Customer: func(context.Context, string) (string, error) { return "acme", nil }}
	p := balance.PendingTopUp{ID: "tp_1", Subscription: "sub-1", Status: balance.TopUpPending, Amount: credit.MustParse("500"),
		Charge: decimal.RequireFromString("20"), Currency: "USD"}
	n.ObservePending(p)
	n.ObservePending(p)
	p.Status, p.Seq, p.GrantID = balance.TopUpConfirmed, 7, "g7"
	n.ObservePending(p)
	p.Status = balance.TopUpExpired
	n.ObservePending(p)
	p.Status = balance.TopUpConfirming // not an event
	n.ObservePending(p)
	n.ObserveRecharge("sub-1", balance.RechargeState{Crossing: 3, Attempts: 1, Status: "failed", LastError: "payment: declined"}, credit.MustParse("300"))
	n.ObserveRecharge("sub-1", balance.RechargeState{Crossing: 3, Attempts: 2, Status: "done", TopUpSeq: 9}, credit.MustParse("300"))
	want := []string{TopUpPending, TopUpPending, TopUpConfirmed, TopUpFailed, AutoRechargeFailed, AutoRechargeSucceeded}
	if len(c.events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(c.events), len(want), c.events)
	}
	for i, e := range c.events {
		if e.Type != want[i] || e.Data.Customer != "acme" || e.Data.Subscription != "sub-1" || !KnownType(e.Type) {
			t.Errorf("event %d: %+v, want type %s", i, e, want[i])
		}
	}
	if c.events[0].ID != c.events[1].ID || c.events[0].ID == c.events[2].ID || c.events[4].ID == c.events[5].ID {
		t.Errorf("ids: %s %s %s %s %s", c.events[0].ID, c.events[1].ID, c.events[2].ID, c.events[4].ID, c.events[5].ID)
	}
	if d := c.events[2].Data; d.TopUp != "tp_1" || d.Charge != "20" || d.Grant != "g7" || d.LedgerSeq != 7 {
		t.Errorf("confirmed data %+v", d)
	}
	if d := c.events[3].Data; d.Reason != "expired" {
		t.Errorf("expired data %+v", d)
	}
	if d := c.events[4].Data; d.Reason != "payment: declined" || d.Amount != "300" {
		t.Errorf("recharge failed data %+v", d)
	}
}
