package balance

import (
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

func TestPendingTopUpLifecycle(t *testing.T) {
	e := newEnv(t, 0)
	sub := "pay"
	e.open(sub, Overage, func(a *AccountSpec) { a.TopUpMin, a.PurchaseLimitCredits = c(250), c(1000) })
	req := PendingRequest{Key: "k1", Subscription: sub, Amount: credit.MustParse("300.000001"), TTL: time.Hour}
	p, replayed, err := e.s.CreatePending(e.ctx, req)
	if err != nil || replayed || p.Status != TopUpPending || !p.Charge.Equal(decimal.RequireFromString("12")) || !p.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("create: %+v %v %v", p, replayed, err)
	}
	if v := e.balance(sub); v.Total != 0 {
		t.Fatalf("a pending top-up gave credits: %s", v.Total)
	}
	if p2, replayed, err := e.s.CreatePending(e.ctx, req); err != nil || !replayed || p2.ID != p.ID {
		t.Fatalf("replay: %+v %v %v", p2, replayed, err)
	}
	if _, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "k1", Subscription: sub, Amount: c(400), TTL: time.Hour}); !errors.Is(err, ErrConflict) {
		t.Fatalf("reused key: %v", err)
	}
	if _, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "small", Subscription: sub, Amount: c(100), TTL: time.Hour}); !errors.Is(err, ErrBelowMinimum) {
		t.Fatalf("below min: %v", err)
	}
	// pending top-ups count against the limit: 300 + 700 would exceed 1000
	if _, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "big", Subscription: sub, Amount: c(700), TTL: time.Hour}); !errors.Is(err, ErrPurchaseLimit) {
		t.Fatalf("limit with a pending top-up: %v", err)
	}
	// confirm: credits, once
	p, res, err := e.s.ConfirmPending(e.ctx, sub, p.ID)
	if err != nil || p.Status != TopUpConfirmed || res.Balance != credit.MustParse("300.000001") || res.Replayed || p.Seq != res.Seq {
		t.Fatalf("confirm: %+v %+v %v", p, res, err)
	}
	if _, res2, err := e.s.ConfirmPending(e.ctx, sub, p.ID); err != nil || !res2.Replayed || res2.Seq != res.Seq {
		t.Fatalf("confirm again: %+v %v", res2, err)
	}
	es := e.checkLedger(sub)
	if len(es) != 1 || es[0].Kind != "topup" || es[0].Fields["charge"] != "12" {
		t.Fatalf("ledger %+v", es)
	}
	// a failed payment gives its reservation back; it cannot be confirmed
	f, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "declined", Subscription: sub, Amount: c(699), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if f, changed, err := e.s.FailPending(e.ctx, sub, f.ID, "card declined"); err != nil || !changed || f.Status != TopUpFailed || f.Reason != "card declined" {
		t.Fatalf("fail: %+v %v %v", f, changed, err)
	}
	var ended *TopUpEndedError
	if _, _, err := e.s.ConfirmPending(e.ctx, sub, f.ID); !errors.As(err, &ended) || ended.TopUp.Status != TopUpFailed {
		t.Fatalf("confirm a failed top-up: %v", err)
	}
	// expiry: due, swept, given back, not confirmable
	x, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "late", Subscription: sub, Amount: c(699), TTL: time.Minute})
	if err != nil {
		t.Fatalf("the failed top-up's reservation was not given back: %v", err)
	}
	if due, err := e.s.DuePending(e.ctx, 10); err != nil || len(due) != 0 {
		t.Fatalf("due before expiry: %v %v", due, err)
	}
	e.clock.Add(time.Minute)
	due, err := e.s.DuePending(e.ctx, 10)
	if err != nil || len(due) != 1 || due[0] != [2]string{sub, x.ID} {
		t.Fatalf("due: %v %v", due, err)
	}
	if x, changed, err := e.s.ExpirePending(e.ctx, sub, x.ID); err != nil || !changed || x.Status != TopUpExpired {
		t.Fatalf("expire: %+v %v %v", x, changed, err)
	}
	if due, _ := e.s.DuePending(e.ctx, 10); len(due) != 0 {
		t.Fatalf("swept but still due: %v", due)
	}
	if _, _, err := e.s.ConfirmPending(e.ctx, sub, x.ID); !errors.As(err, &ended) || ended.TopUp.Status != TopUpExpired {
		t.Fatalf("confirm an expired top-up: %v", err)
	}
	if _, _, err := e.s.ConfirmPending(e.ctx, sub, "tp_nothing"); !errors.Is(err, ErrTopUpNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// a confirmation interrupted after its claim is completed by the next
	y, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "crash", Subscription: sub, Amount: c(699), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if y, _, err := e.s.topUpOp(e.ctx, sub, y.ID, "claim"); err != nil || y.Status != TopUpConfirming {
		t.Fatalf("claim: %+v %v", y, err)
	}
	e.clock.Add(2 * time.Minute) // a claimed top-up no longer expires
	if y, res, err := e.s.ConfirmPending(e.ctx, sub, y.ID); err != nil || y.Status != TopUpConfirmed || res.Balance != credit.MustParse("999.000001") {
		t.Fatalf("resumed confirmation: %+v %+v %v", y, res, err)
	}
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "over", Subscription: sub, Amount: c(250)}); !errors.Is(err, ErrPurchaseLimit) {
		t.Fatalf("confirmed top-ups count once against the limit: %v", err)
	}
}
