package balance

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Amounts up to credit.MaxAmount come back exact from every script path
// (change: adjust/grant/top-up/deduct; apply and its journal; expire;
// restore; open), and a replay with the same key returns the same result
// without changing the balance. Lua's own number-to-string (%.14g) would
// print 1.5e+14 for 150,000,000 credits.
func TestMaxAmountsEveryScriptPath(t *testing.T) {
	e := newEnv(t, 0)
	sub := "big"
	max := credit.MaxAmount
	e.open(sub, Overage, func(a *AccountSpec) { a.LowThreshold = max })

	// change on the exact same key twice: same result, applied once.
	twice := func(name string, f func() (ChangeResult, error), want ChangeResult, total credit.Amount) {
		t.Helper()
		first, err := f()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if first.Replayed || first.Balance != want.Balance || first.GrantID != want.GrantID || !sameDraws(first.Draws, want.Draws) {
			t.Fatalf("%s: got %+v, want %+v", name, first, want)
		}
		again, err := f()
		if err != nil {
			t.Fatalf("%s replayed: %v", name, err)
		}
		if !again.Replayed || again.Seq != first.Seq || again.Balance != first.Balance || again.GrantID != first.GrantID || !sameDraws(again.Draws, first.Draws) {
			t.Fatalf("%s replayed: got %+v, first %+v", name, again, first)
		}
		if v := e.balance(sub); v.Total != total {
			t.Fatalf("%s: total %s after the replay, want %s", name, v.Total, total)
		}
	}
	adjust := func(key string, amt credit.Amount, force bool) func() (ChangeResult, error) {
		return func() (ChangeResult, error) {
			return e.s.Adjust(e.ctx, AdjustRequest{Key: key, Subscription: sub, Amount: amt, Reason: "r", Actor: "a", Force: force})
		}
	}

	// The reported case: 300,000,000 credits granted, 150,000,000 deducted.
	twice("adjust +300M", adjust("a1", c(300_000_000), false), ChangeResult{GrantID: "g1", Balance: c(300_000_000)}, c(300_000_000))
	twice("adjust -150M", adjust("d1", -c(150_000_000), false), ChangeResult{Balance: c(150_000_000), Draws: draws("g1", c(150_000_000))}, c(150_000_000))
	twice("adjust up to max", adjust("a2", max-c(150_000_000), false), ChangeResult{GrantID: "g3", Balance: max}, max)
	twice("adjust -(max-1)", adjust("d2", -(max-1), false),
		ChangeResult{Balance: 1, Draws: draws("g1", c(150_000_000), "g3", max-1-c(150_000_000))}, 1)
	twice("top-up max-1", func() (ChangeResult, error) {
		return e.s.TopUp(e.ctx, TopUpRequest{Key: "t1", Subscription: sub, Amount: max - 1})
	}, ChangeResult{GrantID: "g5", Balance: max}, max)
	tu, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t1", Subscription: sub, Amount: max - 1})
	// 359,999,999.99999996 rounded to cents
	if want := decimal.RequireFromString("360000000"); err != nil || !tu.Charge.Equal(want) {
		t.Fatalf("top-up charge %s (%v), want %s", tu.Charge, err, want)
	}
	twice("deduct max", adjust("d3", -max, true), ChangeResult{Balance: 0, Draws: draws("g3", credit.Amount(1), "g5", max-1)}, 0)
	twice("deduct max into debt", adjust("d4", -max, true), ChangeResult{Balance: -max}, -max)
	// A grant of max settles the debt of max; another max grant expires.
	twice("grant max", func() (ChangeResult, error) {
		return e.s.Grant(e.ctx, GrantRequest{Key: "gr1", Subscription: sub, Type: Promotional, Amount: max})
	}, ChangeResult{GrantID: "g8", Balance: 0}, 0)
	twice("grant max, expiring", func() (ChangeResult, error) {
		return e.s.Grant(e.ctx, GrantRequest{Key: "gr2", Subscription: sub, Type: Promotional, Amount: max, ExpiresAt: t0.Add(time.Hour)})
	}, ChangeResult{GrantID: "g9", Balance: max}, max)

	e.clock.Add(2 * time.Hour)
	x, err := e.s.Expire(e.ctx, sub)
	if err != nil || x.Balance != 0 {
		t.Fatalf("expire: %+v %v", x, err)
	}

	// apply: a line of max-1 from a max grant, then its redelivery gets the
	// first result back from the journal.
	e.grant(sub, "gr3", Purchased, max, time.Time{}, time.Time{})
	b := batch(sub, 0, line("u1", 1, e.clock.Now(), max-1))
	r := e.apply(b)[0]
	if l := r.Lines[0]; l.Status != Applied || l.Balance != 1 || !sameDraws(l.Draws, draws("g11", max-1)) || r.Balance != 1 {
		t.Fatalf("apply max-1: %+v %+v", r, r.Lines)
	}
	r = e.apply(b)[0]
	if l := r.Lines[0]; l.Status != DuplicateOffset || !l.Journaled || l.Balance != 1 || !sameDraws(l.Draws, draws("g11", max-1)) || r.Balance != 1 {
		t.Fatalf("apply replayed: %+v %+v", r, r.Lines)
	}

	want := []credit.Amount{c(300_000_000), -c(150_000_000), max - c(150_000_000), -(max - 1), max - 1, -max, -max,
		max, max, -max, max, -(max - 1)}
	es := e.checkLedger(sub)
	if len(es) != len(want) {
		t.Fatalf("%d ledger entries, want %d", len(es), len(want))
	}
	for i, en := range es {
		if en.Amount != want[i] {
			t.Fatalf("ledger entry %d (%s): %s, want %s", en.Seq, en.Kind, en.Amount, want[i])
		}
	}
	if es[9].Kind != "expiry" || es[9].Grant != "g9" {
		t.Fatalf("breakage entry %+v", es[9])
	}

	// restore: a lost account of max remaining and max unfunded.
	rs := RestoreSpec{Account: AccountSpec{Subscription: "big-r", Customer: "cust", Policy: Unfunded, Currency: "USD", CreditValue: decimal.NewFromInt(1)},
		LastSeq: 7, Unfunded: max, Grants: []RestoreGrant{{ID: "g3", Type: Purchased, Amount: max, Remaining: max, EffectiveAt: t0}}}
	res, err := e.s.Restore(e.ctx, rs)
	if err != nil || res.Balance != max {
		t.Fatalf("restore: %+v %v", res, err)
	}
	v := e.balance("big-r")
	if v.Total != max || v.Available != max || v.Unfunded != max || v.BaseBalance != max || len(v.Grants) != 1 || v.Grants[0].Remaining != max {
		t.Fatalf("restored %+v", v)
	}
}

// A result that cannot be read (here: an idempotency record written by a
// script that printed 1.5e+14) is a clear error saying the change was
// applied, never an invitation to charge again under a new key.
func TestUnreadableChangeResult(t *testing.T) {
	e := newEnv(t, 0)
	sub := "bad-reply"
	e.open(sub, Overage)
	req := AdjustRequest{Key: "d", Subscription: sub, Amount: -c(150_000_000), Reason: "r", Actor: "a", Force: true}
	if _, err := e.s.Adjust(e.ctx, req); err != nil {
		t.Fatal(err)
	}
	k := e.s.keys(sub).Idempotency
	rec, err := e.rc.HGet(e.ctx, k, "d").Result()
	if err != nil {
		t.Fatal(err)
	}
	e.rc.HSet(e.ctx, k, "d", rec+"g1,1.5e+14")
	_, err = e.s.Adjust(e.ctx, req)
	if !errors.Is(err, ErrUnreadableResult) || Retryable(err) {
		t.Fatalf("replay of an unreadable record: %v, want ErrUnreadableResult", err)
	}
	if msg := fmt.Sprint(err); !strings.Contains(msg, "applied") || !strings.Contains(msg, "ledger seq 1") {
		t.Fatalf("error %q does not say it was applied", msg)
	}
	if v := e.balance(sub); v.Total != -c(150_000_000) {
		t.Fatalf("balance %s", v.Total)
	}
}

// Live grants are capped per subscription: a grant, top-up or positive
// adjustment beyond Options.MaxGrants is refused (ErrTooManyGrants, the key
// not consumed); deductions, usage and expiry free room.
func TestGrantCap(t *testing.T) {
	if _, err := New(testenv.Redis(t), Options{MaxGrants: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative cap: %v", err)
	}
	e := newEnv(t, 0)
	e.s.grants = 3
	sub := "cap"
	e.open(sub, Overage)
	e.grant(sub, "g1", Promotional, c(1), time.Time{}, t0.Add(time.Hour))
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t1", Subscription: sub, Amount: c(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a1", Subscription: sub, Amount: c(4), Reason: "r", Actor: "a", ExpiresAt: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	refused := func(what string, n int, err error) {
		t.Helper()
		if !errors.Is(err, ErrTooManyGrants) || !strings.Contains(err.Error(), fmt.Sprintf("has %d active grants", n)) {
			t.Fatalf("%s beyond the cap: %v", what, err)
		}
	}
	_, err := e.s.Grant(e.ctx, GrantRequest{Key: "g2", Subscription: sub, Type: Promotional, Amount: 1})
	refused("grant", 3, err)
	_, err = e.s.TopUp(e.ctx, TopUpRequest{Key: "t2", Subscription: sub, Amount: 1})
	refused("top-up", 3, err)
	_, err = e.s.Adjust(e.ctx, AdjustRequest{Key: "a2", Subscription: sub, Amount: 1, Reason: "r", Actor: "a"})
	refused("adjustment", 3, err)
	// Deductions are not grants; usage that finishes a grant makes room, and
	// the refused key was not consumed.
	if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "d1", Subscription: sub, Amount: -credit.MustParse("0.5"), Reason: "r", Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	e.apply(batch(sub, 0, line("u1", 1, t0, credit.MustParse("0.5"))))
	if r, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t2", Subscription: sub, Amount: 1}); err != nil || r.Replayed {
		t.Fatalf("top-up after usage: %+v %v", r, err)
	}
	_, err = e.s.Grant(e.ctx, GrantRequest{Key: "g2", Subscription: sub, Type: Promotional, Amount: 1})
	refused("grant", 3, err)

	// a1 expires: the refusing script's own sweep (its breakage) is kept.
	e.clock.Add(3 * time.Hour)
	e.s.grants = 2
	_, err = e.s.Grant(e.ctx, GrantRequest{Key: "g2", Subscription: sub, Type: Promotional, Amount: 1})
	refused("grant after expiry", 2, err)
	e.s.grants = 3
	e.grant(sub, "g2", Promotional, 1, time.Time{}, time.Time{})
	expiries := 0
	for _, en := range e.checkLedger(sub) {
		if en.Kind == "expiry" {
			expiries++
			if en.Amount != -c(4) {
				t.Fatalf("breakage %+v", en)
			}
		}
	}
	if v := e.balance(sub); expiries != 1 || len(v.Grants) != 3 || v.Total != c(2)+1+1 {
		t.Fatalf("%d expiry entries, balance %+v", expiries, v)
	}
}

// The cap refuses clients' new grants, never credits the customer already
// owns: a paid pending top-up's confirmation and a plan change's carried
// grants pass it, up to the hard ceiling (SystemGrantsFactor × the cap),
// while a client's grant is still refused.
func TestGrantCapSparesPaidAndCarriedCredits(t *testing.T) {
	e := newEnv(t, 0)
	e.s.grants = 2
	sub := "owned"
	e.open(sub, Overage)
	p, _, err := e.s.CreatePending(e.ctx, PendingRequest{Key: "paid", Subscription: sub, Amount: c(5), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.grant(sub, "g1", Promotional, c(1), time.Time{}, time.Time{})
	e.grant(sub, "g2", Promotional, c(1), time.Time{}, time.Time{})
	if _, err := e.s.Grant(e.ctx, GrantRequest{Key: "g3", Subscription: sub, Type: Promotional, Amount: c(1)}); !errors.Is(err, ErrTooManyGrants) {
		t.Fatalf("a client's grant beyond the cap: %v", err)
	}
	// paid before the cap was reached: confirmed all the same
	if p, res, err := e.s.ConfirmPending(e.ctx, sub, p.ID); err != nil || p.Status != TopUpConfirmed || res.Balance != c(7) {
		t.Fatalf("confirming a paid top-up at the cap: %+v %+v %v", p, res, err)
	}
	ceiling := 2 * SystemGrantsFactor
	for i := 4; i <= ceiling; i++ {
		if _, err := e.s.Grant(e.ctx, GrantRequest{Key: fmt.Sprint("carry-", i), Subscription: sub, Type: Purchased, Amount: c(1), CarryOver: true}); err != nil {
			t.Fatalf("carried grant %d (cap 2, ceiling %d): %v", i, ceiling, err)
		}
	}
	_, err = e.s.Grant(e.ctx, GrantRequest{Key: "carry-over-ceiling", Subscription: sub, Type: Purchased, Amount: c(1), CarryOver: true})
	if !errors.Is(err, ErrTooManyGrants) {
		t.Fatalf("carried grant beyond the ceiling %d: %v", ceiling, err)
	}
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t1", Subscription: sub, Amount: c(1)}); !errors.Is(err, ErrTooManyGrants) {
		t.Fatalf("a client's top-up beyond the cap: %v", err)
	}
	if v := e.balance(sub); len(v.Grants) != ceiling || v.Total != c(int64(ceiling)-3+7) {
		t.Fatalf("%d grants, total %s", len(v.Grants), v.Total)
	}
}
