package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

type capture struct{ events []Event }

func (c *capture) Emit(_ context.Context, e Event) error { c.events = append(c.events, e); return nil }

// Each status of a pending top-up and each auto-recharge attempt is one
// event with a stable id (a repeat emits the same id; the outbox keeps one).
// A pending top-up's statuses are recorded by topup.lua with the change
// and drained: a second drain finds nothing.
func TestPendingAndRechargeEvents(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := context.Background()
	bal, _ := balance.New(rc, balance.Options{Prefix: pfx})
	if _, err := bal.OpenAccount(ctx, balance.AccountSpec{Subscription: "sub-1", Customer: "acme", Policy: balance.Unfunded, Currency: "USD",
		CreditValue: decimal.RequireFromString("0.04")}); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	n := &Notifier{Emitter: c, Notes: bal, Ledger: bal}
	p, _, err := bal.CreatePending(ctx, balance.PendingRequest{Key: "k1", Subscription: "sub-1", Amount: credit.MustParse("500"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n.ObservePending(p)
	n.ObservePending(p)
	p, _, err = bal.ConfirmPending(ctx, "sub-1", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	n.ObservePending(p)
	q, _, err := bal.CreatePending(ctx, balance.PendingRequest{Key: "k2", Subscription: "sub-1", Amount: credit.MustParse("300"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bal.FailPending(ctx, "sub-1", q.ID, "card declined"); err != nil {
		t.Fatal(err)
	}
	n.ObservePending(q)
	n.Customer = func(context.Context, string) (string, error) { return "acme", nil }
	n.ObserveRecharge("sub-1", balance.RechargeState{Crossing: 3, Attempts: 1, Status: "failed", LastError: "payment: declined"}, credit.MustParse("300"))
	n.ObserveRecharge("sub-1", balance.RechargeState{Crossing: 3, Attempts: 2, Status: "done", TopUpSeq: 9}, credit.MustParse("300"))
	want := []string{TopUpPending, TopUpCreated, TopUpConfirmed, TopUpPending, TopUpFailed, AutoRechargeFailed, AutoRechargeSucceeded}
	if len(c.events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(c.events), len(want), c.events)
	}
	for i, e := range c.events {
		if e.Type != want[i] || e.Data.Customer != "acme" || e.Data.Subscription != "sub-1" || !KnownType(e.Type) {
			t.Errorf("event %d: %+v, want type %s", i, e, want[i])
		}
	}
	if c.events[0].ID != EventID(TopUpPending, "sub-1", p.ID) || c.events[2].ID != EventID(TopUpConfirmed, "sub-1", p.ID) ||
		c.events[4].ID != EventID(TopUpFailed, "sub-1", q.ID) || c.events[5].ID == c.events[6].ID {
		t.Errorf("ids: %+v", c.events)
	}
	if d := c.events[2].Data; d.TopUp != p.ID || d.Charge != "20" || d.Grant != p.GrantID || d.LedgerSeq != p.Seq || d.Amount != "500" || d.Grant == "" {
		t.Errorf("confirmed data %+v (top-up %+v)", d, p)
	}
	if d := c.events[4].Data; d.Reason != "card declined" || d.Amount != "300" || d.Charge != "12" {
		t.Errorf("failed data %+v", d)
	}
	if d := c.events[5].Data; d.Reason != "payment: declined" || d.Amount != "300" {
		t.Errorf("recharge failed data %+v", d)
	}
}
