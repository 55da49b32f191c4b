package balance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

func TestNewValidates(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rc.Close()
	for _, o := range []Options{{Prefix: "a{b"}, {DedupeWindow: time.Millisecond}, {GraceWindow: -time.Second}} {
		if _, err := New(rc, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", o, err)
		}
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(nil) = %v", err)
	}
}

func TestBurnDownOrder(t *testing.T) {
	e := newEnv(t, 0)
	sub := "order"
	e.open(sub, Unfunded)
	h := t0.Add(-time.Hour)
	e.grant(sub, "k1", Purchased, c(10), h, time.Time{})                               // g1
	e.grant(sub, "k2", Promotional, c(10), h, time.Time{})                             // g2
	e.grant(sub, "k3", Adjustment, c(10), h, time.Time{})                              // g3
	e.grant(sub, "k4", Purchased, c(10), h, t0.Add(240*time.Hour))                     // g4
	e.grant(sub, "k5", Promotional, c(10), h, t0.Add(240*time.Hour))                   // g5
	e.grant(sub, "k6", Promotional, c(10), h, t0.Add(120*time.Hour))                   // g6
	e.grant(sub, "k7", Purchased, c(10), t0.Add(-2*time.Hour), time.Time{})            // g7: older than g1
	e.grant(sub, "k8", Promotional, c(10), t0.Add(time.Hour), time.Time{})             // g8: not yet effective
	e.grant(sub, "k9", Adjustment, c(10), t0.Add(-3*time.Hour), t0.Add(240*time.Hour)) // g9: between promo and purchased at 10d
	r := e.apply(batch(sub, 0, line("e1", 1, t0, c(85))))[0]
	want := draws("g6", c(10), "g5", c(10), "g9", c(10), "g4", c(10), "g2", c(10), "g3", c(10), "g7", c(10), "g1", c(10))
	l := r.Lines[0]
	if l.Status != Applied || !sameDraws(l.Draws, want) {
		t.Fatalf("draws %v, want %v", l.Draws, want)
	}
	if l.Unfunded != c(5) || l.Overage != 0 || l.Balance != c(10) {
		t.Fatalf("unfunded %s overage %s balance %s, want 5 0 10", l.Unfunded, l.Overage, l.Balance)
	}
	v := e.balance(sub)
	if v.Total != c(10) || v.Available != 0 || v.Unfunded != c(5) || len(v.Grants) != 1 || v.Grants[0].ID != "g8" {
		t.Fatalf("balance %+v", v)
	}
	// Once g8 is effective it funds usage.
	e.clock.Add(time.Hour)
	r = e.apply(batch(sub, 0, line("e2", 2, e.clock.Now(), credit.MustParse("0.000001"))))[0]
	if !sameDraws(r.Lines[0].Draws, draws("g8", credit.Amount(1))) {
		t.Fatalf("draws %v", r.Lines[0].Draws)
	}
	e.checkLedger(sub)
}

func TestPartialDrawsAcrossLinesAndBatchResult(t *testing.T) {
	e := newEnv(t, 0)
	sub := "partial"
	e.open(sub, Overage)
	e.grant(sub, "a", Promotional, c(3), t0, t0.Add(time.Hour)) // g1
	e.grant(sub, "b", Purchased, c(5), t0, time.Time{})         // g2
	r := e.apply(batch(sub, 0,
		line("x1", 10, t0, c(2)),
		line("x2", 11, t0, c(2)),
		line("x3", 12, t0, c(5)),
	))[0]
	want := []LineResult{
		{Status: Applied, Draws: draws("g1", c(2)), Balance: c(6)},
		{Status: Applied, Draws: draws("g1", c(1), "g2", c(1)), Balance: c(4)},
		{Status: Applied, Draws: draws("g2", c(4)), Overage: c(1), Balance: c(-1)},
	}
	for i, w := range want {
		if fmt.Sprint(r.Lines[i]) != fmt.Sprint(w) {
			t.Errorf("line %d: %+v, want %+v", i, r.Lines[i], w)
		}
	}
	if r.Balance != c(-1) || r.Debt != c(1) || r.FirstSeq != 3 || r.LastSeq != 3 {
		t.Fatalf("batch %+v", r)
	}
	es := e.checkLedger(sub)
	last := es[len(es)-1]
	if last.Kind != "usage" || last.Amount != c(-9) || last.Events != 3 || last.Fields["r"] != "usage-events/0:10-12" {
		t.Fatalf("usage entry %+v", last)
	}
	if page, err := e.s.Ledger(e.ctx, sub, 2, 1); err != nil || len(page) != 1 || page[0].Seq != 2 || page[0].Grant != "g2" {
		t.Fatalf("ledger page from 2: %+v %v", page, err)
	}
	// The next grant settles the debt: balance = 10 - 1.
	g := e.grant(sub, "c", Purchased, c(10), time.Time{}, time.Time{})
	v := e.balance(sub)
	if g.Balance != c(9) || v.Debt != 0 || v.Available != c(9) || v.Grants[0].Remaining != c(9) {
		t.Fatalf("after settlement: %+v / %+v", g, v)
	}
	e.checkLedger(sub)
}

func TestLateEventsWithinGrace(t *testing.T) {
	e := newEnv(t, 10*time.Minute)
	sub := "late"
	e.open(sub, Unfunded)
	e.grant(sub, "a", Purchased, c(100), t0.Add(-24*time.Hour), t0) // g1 expires at t0
	e.grant(sub, "b", Promotional, c(100), t0, time.Time{})         // g2 effective at t0
	e.clock.Set(t0.Add(5 * time.Minute))
	r := e.apply(batch(sub, 0,
		line("l1", 1, t0.Add(-time.Minute), c(30)),  // late, within grace: g1 was eligible then
		line("l2", 2, t0.Add(5*time.Minute), c(30)), // now: g1 expired
		line("l3", 3, t0.Add(-time.Hour), c(20)),    // beyond grace: clamped to now-grace = t0-5m
		line("l4", 4, t0.Add(time.Hour), c(1)),      // future: clamped to now
	))[0]
	for i, w := range [][]Draw{draws("g1", c(30)), draws("g2", c(30)), draws("g1", c(20)), draws("g2", c(1))} {
		if !sameDraws(r.Lines[i].Draws, w) {
			t.Errorf("line %d draws %v, want %v", i, r.Lines[i].Draws, w)
		}
	}
	// Before exp+grace g1's remainder counts in the total but cannot be spent now.
	v := e.balance(sub)
	if v.Total != c(119) || v.Available != c(69) {
		t.Fatalf("total %s available %s, want 119 69", v.Total, v.Available)
	}
	// At exp+grace the remainder is breakage, and a late event no longer reaches g1.
	e.clock.Set(t0.Add(10 * time.Minute))
	r = e.apply(batch(sub, 0, line("l5", 5, t0.Add(-time.Minute), c(1))))[0]
	if !sameDraws(r.Lines[0].Draws, draws("g2", c(1))) {
		t.Fatalf("draws %v", r.Lines[0].Draws)
	}
	es := e.checkLedger(sub)
	if es[3].Kind != "expiry" || es[3].Amount != c(-50) || es[3].Grant != "g1" {
		t.Fatalf("entry 4 = %+v, want expiry -50 of g1", es[3])
	}
}

func TestExpiryBreakageExactlyOnce(t *testing.T) {
	e := newEnv(t, 10*time.Minute)
	sub := "expiry"
	e.open(sub, Unfunded)
	e.grant(sub, "a", Promotional, c(100), t0, t0.Add(time.Hour))
	e.clock.Add(30 * time.Minute)
	e.apply(batch(sub, 0, line("u1", 1, e.clock.Now(), c(40))))
	e.clock.Set(t0.Add(65 * time.Minute))
	if _, err := e.s.Expire(e.ctx, sub); err != nil {
		t.Fatal(err)
	}
	if v := e.balance(sub); v.Total != c(60) || v.Available != 0 || len(e.ledger(sub)) != 2 {
		t.Fatalf("within grace: %+v", v)
	}
	e.clock.Set(t0.Add(70 * time.Minute))
	for i := 0; i < 3; i++ {
		if _, err := e.s.Expire(e.ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	e.apply(batch(sub, 0, line("u2", 2, e.clock.Now(), c(1))))
	es := e.checkLedger(sub)
	n := 0
	for _, x := range es {
		if x.Kind == "expiry" {
			n++
			if x.Amount != c(-60) {
				t.Errorf("breakage %s, want -60", x.Amount)
			}
		}
	}
	if n != 1 || e.balance(sub).Total != 0 {
		t.Fatalf("%d breakage entries, want 1; ledger %+v", n, es)
	}
}

func TestTopUpLimitsChargeAndIdempotency(t *testing.T) {
	e := newEnv(t, 0)
	sub := "topup"
	e.open(sub, Overage, func(a *AccountSpec) {
		a.TopUpMin, a.TopUpMax, a.CreditValue, a.Currency = c(250), c(8000), decimal.RequireFromString("0.95"), "EUR"
	})
	for _, tc := range []struct {
		amt  credit.Amount
		want error
	}{{c(249), ErrBelowMinimum}, {credit.MustParse("249.999999"), ErrBelowMinimum}, {credit.MustParse("8000.000001"), ErrAboveMaximum}} {
		if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "bad-" + tc.amt.String(), Subscription: sub, Amount: tc.amt}); !errors.Is(err, tc.want) {
			t.Errorf("top-up %s: %v, want %v", tc.amt, err, tc.want)
		}
	}
	if len(e.ledger(sub)) != 0 {
		t.Fatal("a refused top-up wrote the ledger")
	}
	req := TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.MustParse("250.5")}
	r1, err := e.s.TopUp(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Charge.Equal(decimal.RequireFromString("237.98")) || r1.Currency != "EUR" || r1.GrantID != "g1" || r1.Balance != credit.MustParse("250.5") {
		t.Fatalf("top-up %+v", r1)
	}
	r2, err := e.s.TopUp(e.ctx, req)
	if err != nil || !r2.Replayed || r2.Seq != r1.Seq || r2.GrantID != r1.GrantID || r2.Balance != r1.Balance || !r2.Charge.Equal(r1.Charge) || r2.Currency != "EUR" {
		t.Fatalf("replay %+v, %v", r2, err)
	}
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t1", Subscription: sub, Amount: c(300)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("reused key: %v, want ErrConflict", err)
	}
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t2", Subscription: sub, Amount: c(8000)}); err != nil {
		t.Fatal(err)
	}
	es := e.checkLedger(sub)
	if len(es) != 2 || es[0].Kind != "topup" || es[0].Fields["charge"] != "237.98" || es[0].Fields["currency"] != "EUR" || es[1].Fields["charge"] != "7600" {
		t.Fatalf("ledger %+v", es)
	}
	v := e.balance(sub)
	if v.Grants[0].Type != Purchased || v.Grants[0].CostBasis != "0.95" {
		t.Fatalf("grant %+v", v.Grants[0])
	}
	if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t3", Subscription: "nobody", Amount: c(300)}); !errors.Is(err, ErrUnknownSubscription) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestAdjustments(t *testing.T) {
	e := newEnv(t, 0)
	sub := "adjust"
	e.open(sub, Unfunded)
	e.grant(sub, "inc", Purchased, c(10), time.Time{}, time.Time{})
	if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a0", Subscription: sub, Amount: c(-1), Actor: "admin"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no reason: %v", err)
	}
	_, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a1", Subscription: sub, Amount: c(-11), Reason: "refund", Actor: "ops@x"})
	if !errors.Is(err, ErrInsufficientBalance) || Retryable(err) {
		t.Fatalf("deduct beyond balance: %v", err)
	}
	if v := e.balance(sub); v.Total != c(10) || len(e.ledger(sub)) != 1 {
		t.Fatalf("refused deduction changed things: %+v", v)
	}
	r, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a2", Subscription: sub, Amount: c(-4), Reason: "refund", Actor: "ops@x"})
	if err != nil || r.Balance != c(6) || !sameDraws(r.Draws, draws("g1", c(4))) {
		t.Fatalf("deduct: %+v %v", r, err)
	}
	again, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a2", Subscription: sub, Amount: c(-4), Reason: "refund", Actor: "ops@x"})
	if err != nil || !again.Replayed || again.Seq != r.Seq || !sameDraws(again.Draws, r.Draws) {
		t.Fatalf("replay: %+v %v", again, err)
	}
	if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a2", Subscription: sub, Amount: c(-4), Reason: "other", Actor: "ops@x"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	r, err = e.s.Adjust(e.ctx, AdjustRequest{Key: "a3", Subscription: sub, Amount: c(-10), Reason: "chargeback", Actor: "ops@x", Force: true})
	if err != nil || r.Balance != c(-4) {
		t.Fatalf("forced: %+v %v", r, err)
	}
	r, err = e.s.Adjust(e.ctx, AdjustRequest{Key: "a4", Subscription: sub, Amount: c(5), Reason: "goodwill", Actor: "ops@x"})
	if err != nil || r.Balance != c(1) || r.GrantID == "" {
		t.Fatalf("add: %+v %v", r, err)
	}
	es := e.checkLedger(sub)
	if es[len(es)-1].Fields["reason"] != "goodwill" || es[len(es)-1].Fields["actor"] != "ops@x" || es[len(es)-1].Kind != "adjustment" {
		t.Fatalf("ledger %+v", es[len(es)-1])
	}
	// The debt was settled from the adjustment grant.
	v := e.balance(sub)
	if v.Debt != 0 || v.Available != c(1) || v.Grants[0].Type != Adjustment || v.Grants[0].Remaining != c(1) {
		t.Fatalf("balance %+v", v)
	}
}

func TestGrantIdempotency(t *testing.T) {
	e := newEnv(t, 0)
	sub := "gidem"
	e.open(sub, Unfunded)
	r1 := e.grant(sub, "included", Promotional, c(100), time.Time{}, time.Time{})
	e.clock.Add(time.Minute)
	r2 := e.grant(sub, "included", Promotional, c(100), time.Time{}, time.Time{})
	if !r2.Replayed || r2.GrantID != r1.GrantID || r2.Seq != r1.Seq || e.balance(sub).Total != c(100) {
		t.Fatalf("replay %+v vs %+v", r2, r1)
	}
	if _, err := e.s.Grant(e.ctx, GrantRequest{Key: "included", Subscription: sub, Type: Purchased, Amount: c(100)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	// OpenAccount is idempotent and may update the plan, not the customer.
	e.open(sub, Unfunded)
	if _, err := e.s.OpenAccount(e.ctx, AccountSpec{Subscription: sub, Customer: "other", Policy: Unfunded, Currency: "USD"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("customer change: %v", err)
	}
	if len(e.checkLedger(sub)) != 1 {
		t.Fatal("ledger has more than the one grant")
	}
}

func TestRedeliveryAndDuplicateIDs(t *testing.T) {
	e := newEnv(t, 0)
	sub := "dedupe"
	e.open(sub, Unfunded)
	e.grant(sub, "g", Purchased, c(1000), time.Time{}, time.Time{})
	b := batch(sub, 3, line("d1", 100, t0, c(1)), line("d2", 101, t0, c(2)), line("d3", 102, t0, c(3)))
	first := e.apply(b)[0]
	if first.Balance != c(994) {
		t.Fatalf("balance %s", first.Balance)
	}
	before := e.ledger(sub)
	// (a) Kafka redelivers the same offsets: nothing changes.
	r := e.apply(b)[0]
	for i, l := range r.Lines {
		if l.Status != DuplicateOffset {
			t.Fatalf("redelivered line %d: %s", i, l.Status)
		}
	}
	// (b) the producer sent d2 again (new offset), d4 is new, d4 repeats within the batch.
	r = e.apply(batch(sub, 3, line("d2", 103, t0, c(2)), line("d4", 104, t0, c(4)), line("d4", 105, t0, c(4))))[0]
	got := fmt.Sprint(r.Lines[0].Status, r.Lines[1].Status, r.Lines[2].Status)
	if got != fmt.Sprint(DuplicateID, Applied, DuplicateID) || r.Balance != c(990) {
		t.Fatalf("statuses %s balance %s", got, r.Balance)
	}
	// Another partition has its own watermark, but the ids are still known.
	r = e.apply(batch(sub, 4, line("d1", 1, t0, c(1)), line("d5", 2, t0, c(5))))[0]
	if r.Lines[0].Status != DuplicateID || r.Lines[1].Status != Applied {
		t.Fatalf("other partition %+v", r.Lines)
	}
	// Without a Kafka source only ids dedupe.
	r = e.apply(Batch{Subscription: sub, Lines: []Line{line("d5", 0, t0, c(5)), line("d6", 0, t0, c(6))}})[0]
	if r.Lines[0].Status != DuplicateID || r.Lines[1].Status != Applied || r.Balance != c(979) {
		t.Fatalf("http batch %+v", r)
	}
	if len(e.ledger(sub)) != len(before)+3 {
		t.Fatalf("ledger grew by %d, want 3", len(e.ledger(sub))-len(before))
	}
	// After two windows an id is forgotten; the watermark still stops redelivery.
	e.clock.Add(2*time.Hour + time.Second)
	r = e.apply(b, batch(sub, 5, line("d1", 7, t0, c(1))))[0]
	if r.Lines[0].Status != DuplicateOffset {
		t.Fatalf("old redelivery %s", r.Lines[0].Status)
	}
	e.checkLedger(sub)
}

func TestApplyValidationAndUnknown(t *testing.T) {
	e := newEnv(t, 0)
	e.open("known", Unfunded)
	rs, err := e.s.Apply(e.ctx, []Batch{
		batch("known", 0, line("a", 2, t0, c(1)), line("b", 2, t0, c(1))),
		batch("known", 0, line("a", 1, t0, -1)),
		batch("nobody", 0, line("a", 1, t0, c(1))),
		batch("known", 0, line("ok", 1, t0, c(1))),
	})
	if err == nil || !errors.Is(rs[0].Err, ErrInvalid) || !errors.Is(rs[1].Err, ErrInvalid) || !errors.Is(rs[2].Err, ErrUnknownSubscription) || rs[3].Err != nil {
		t.Fatalf("errors %v / %+v", err, rs)
	}
	if rs[3].Lines[0].Status != Applied || rs[3].Lines[0].Unfunded != c(1) {
		t.Fatalf("good batch %+v", rs[3])
	}
}

func TestLargestAmountsExact(t *testing.T) {
	e := newEnv(t, 0)
	sub := "max"
	e.open(sub, Overage)
	max := credit.MaxAmount
	e.grant(sub, "m", Purchased, max, time.Time{}, time.Time{})
	if _, err := e.s.Grant(e.ctx, GrantRequest{Key: "one", Subscription: sub, Type: Promotional, Amount: 1}); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("grant beyond max: %v", err)
	}
	r := e.apply(batch(sub, 0, line("a", 1, t0, max-1)))[0]
	if r.Balance != 1 || r.Lines[0].Draws[0].Amount != max-1 {
		t.Fatalf("after max-1: %+v", r)
	}
	e.grant(sub, "m2", Promotional, max-1, time.Time{}, time.Time{})
	// Two lines of max: the first drains the grants, the second is overage
	// down to -max; the rest is unfunded. The ledger sum splits to stay exact.
	r = e.apply(batch(sub, 0, line("b", 2, t0, max), line("c", 3, t0, max), line("d", 4, t0, 7)))[0]
	l := r.Lines
	if l[0].Balance != 0 || l[1].Balance != -max || l[1].Overage != max || l[2].Unfunded != 7 || r.Debt != max {
		t.Fatalf("lines %+v", l)
	}
	if r.LastSeq-r.FirstSeq != 1 {
		t.Fatalf("usage should be split in 2 ledger entries, got %d..%d", r.FirstSeq, r.LastSeq)
	}
	if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "x", Subscription: sub, Amount: -1, Reason: "r", Actor: "a", Force: true}); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("deduct beyond -max: %v", err)
	}
	// A max top-up settles the debt exactly.
	g := e.grant(sub, "m3", Purchased, max, time.Time{}, time.Time{})
	v := e.balance(sub)
	if g.Balance != 0 || v.Debt != 0 || v.Unfunded != 7 || v.Total != 0 {
		t.Fatalf("after settlement %+v", v)
	}
	e.checkLedger(sub)
}

func TestLowBalanceCrossings(t *testing.T) {
	e := newEnv(t, 0)
	sub := "low-" + testenv.RandomID(t)
	o, err := e.s.OpenAccount(e.ctx, AccountSpec{Subscription: sub, Customer: "c", Policy: Unfunded, Currency: "USD", LowThreshold: c(10), LowPercent: 20})
	if err != nil || o.Crossing != WentLow || !o.Low { // an empty account is below its threshold
		t.Fatalf("open %+v %v", o, err)
	}
	r := e.grant(sub, "g", Purchased, c(100), time.Time{}, time.Time{}) // threshold max(10, 20% of 100) = 20
	if r.Crossing != WentOK || r.Low {
		t.Fatalf("grant %+v", r)
	}
	var crossings []LowChange
	for i, amt := range []credit.Amount{c(70), c(10), credit.MustParse("0.000001"), c(1)} {
		br := e.apply(batch(sub, 0, line(fmt.Sprint("u", i), int64(i+1), t0, amt)))[0]
		crossings = append(crossings, br.Crossing)
	}
	if fmt.Sprint(crossings) != fmt.Sprint([]LowChange{NoChange, NoChange, WentLow, NoChange}) {
		t.Fatalf("crossings %q", crossings)
	}
	low, err := e.s.LowSubscriptions(e.ctx)
	if err != nil || len(low) != 1 || low[0] != sub {
		t.Fatalf("low %v %v", low, err)
	}
	// A top-up of 30 brings 48.999999 >= max(10, 20% of 30 = 6): back up, once.
	t1, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t", Subscription: sub, Amount: c(30)})
	if err != nil || t1.Crossing != WentOK || t1.Low {
		t.Fatalf("top-up %+v %v", t1, err)
	}
	if low, _ := e.s.LowSubscriptions(e.ctx); len(low) != 0 {
		t.Fatalf("still low %v", low)
	}
	if t2, _ := e.s.TopUp(e.ctx, TopUpRequest{Key: "t", Subscription: sub, Amount: c(30)}); !t2.Replayed {
		t.Fatal("not replayed")
	}
}

// A script that ran whose results were lost (crash, timeout): replaying
// the same batches, even cut differently, changes nothing.
func TestReplayAfterCrash(t *testing.T) {
	e := newEnv(t, 0)
	subs := []string{"crash-a", "crash-b"}
	for _, s := range subs {
		e.open(s, Overage)
		e.grant(s, "g", Purchased, c(50), time.Time{}, time.Time{})
	}
	var lines []Line
	for i := 0; i < 40; i++ {
		lines = append(lines, line(fmt.Sprint("ev", i), int64(1000+i), t0, credit.MustParse("1.5")))
	}
	// The first run: a few batches per subscription, results discarded.
	for _, cut := range [][2]int{{0, 10}, {10, 25}} {
		if _, err := e.s.Apply(e.ctx, []Batch{batch(subs[0], 1, lines[cut[0]:cut[1]]...), batch(subs[1], 1, lines[cut[0]:cut[1]]...)}); err != nil {
			t.Fatal(err)
		}
	}
	snap := map[string]BalanceView{}
	for _, s := range subs {
		snap[s] = e.balance(s)
	}
	// Restart from the last committed offset (1000): the batches are cut differently now.
	for _, cut := range [][2]int{{0, 7}, {7, 40}} {
		rs := e.apply(batch(subs[0], 1, lines[cut[0]:cut[1]]...), batch(subs[1], 1, lines[cut[0]:cut[1]]...))
		for _, r := range rs {
			for i, l := range r.Lines {
				off := cut[0] + i
				if wantApplied := off >= 25; (l.Status == Applied) != wantApplied || (!wantApplied && l.Status != DuplicateOffset) {
					t.Fatalf("offset %d: %s", off, l.Status)
				}
			}
		}
	}
	for _, s := range subs {
		v := e.balance(s)
		if want := snap[s].Total - credit.MustParse("22.5"); v.Total != want || v.Total != c(-10) {
			t.Fatalf("%s: %s, want %s", s, v.Total, want)
		}
		e.checkLedger(s)
	}
}

// 50 goroutines of usage, top-ups and adjustments on one subscription.
func TestConcurrentInvariant(t *testing.T) {
	e := newEnv(t, 0)
	e.s.grants = 1000 // ~330 top-ups stay live here; the cap has its own test
	sub := "busy"
	e.open(sub, Overage, func(a *AccountSpec) { a.TopUpMin = c(1) })
	e.grant(sub, "inc", Promotional, c(1000), time.Time{}, time.Time{})
	const workers, rounds = 50, 20
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			var err error
			for i := 0; i < rounds && err == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				switch (w + i) % 3 {
				case 0:
					_, err = e.s.Apply(context.Background(), []Batch{{Subscription: sub, Topic: "t", Partition: int32(w), Lines: []Line{
						line(key+"a", int64(i*2), t0, credit.MustParse("0.7")), line(key+"b", int64(i*2+1), t0, credit.MustParse("1.3"))}}})
				case 1:
					_, err = e.s.TopUp(context.Background(), TopUpRequest{Key: key, Subscription: sub, Amount: credit.MustParse("1.25")})
				case 2:
					_, err = e.s.Adjust(context.Background(), AdjustRequest{Key: key, Subscription: sub, Amount: credit.MustParse("-0.5"), Reason: "test", Actor: "t", Force: true})
				}
			}
			errs <- err
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	es := e.checkLedger(sub)
	var usage, topups, adjusts int
	for _, x := range es {
		switch x.Kind {
		case "usage":
			usage += int(x.Events)
		case "topup":
			topups++
		case "adjustment":
			adjusts++
		}
	}
	// Each (w+i)%3 class: count them exactly.
	var wantU, wantT, wantA int
	for w := 0; w < workers; w++ {
		for i := 0; i < rounds; i++ {
			switch (w + i) % 3 {
			case 0:
				wantU += 2
			case 1:
				wantT++
			default:
				wantA++
			}
		}
	}
	if usage != wantU || topups != wantT || adjusts != wantA {
		t.Fatalf("usage %d topups %d adjusts %d, want %d %d %d", usage, topups, adjusts, wantU, wantT, wantA)
	}
	want := c(1000) - credit.Amount(wantU/2)*c(2) + credit.Amount(wantT)*credit.MustParse("1.25") - credit.Amount(wantA)*credit.MustParse("0.5")
	if v := e.balance(sub); v.Total != want {
		t.Fatalf("balance %s, want %s", v.Total, want)
	}
}

func TestRedisDownIsRetryable(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rc.Close()
	s, err := New(rc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Apply(context.Background(), []Batch{batch("x", 0, line("a", 1, t0, 1))})
	if !Retryable(err) {
		t.Fatalf("apply: %v, want retryable", err)
	}
	if _, err := s.Check(context.Background(), "x", 1); !Retryable(err) {
		t.Fatalf("check: %v", err)
	}
	if _, err := s.TopUp(context.Background(), TopUpRequest{Key: "k", Subscription: "x", Amount: 1}); !Retryable(err) {
		t.Fatalf("top-up: %v", err)
	}
}

// Check allows an amount up to what is available now (a grant not yet
// effective does not count) and reports the policy.
func TestCheckAllowsUpToEffectiveAvailable(t *testing.T) {
	e := newEnv(t, 0)
	sub := "check"
	e.open(sub, Overage)
	if _, err := e.s.Check(e.ctx, "nobody", 1); !errors.Is(err, ErrUnknownSubscription) {
		t.Fatalf("unknown: %v", err)
	}
	e.grant(sub, "g", Purchased, c(5), time.Time{}, time.Time{})
	e.grant(sub, "f", Purchased, c(5), t0.Add(time.Hour), time.Time{}) // not yet effective
	for _, tc := range []struct {
		amt credit.Amount
		ok  bool
	}{{c(5), true}, {c(5) + 1, false}, {0, true}} {
		r, err := e.s.Check(e.ctx, sub, tc.amt)
		if err != nil || r.Allowed != tc.ok || r.Available != c(5) || r.Policy != Overage {
			t.Errorf("check %s: %+v %v", tc.amt, r, err)
		}
	}
}

// A grant is eligible on [effective, expires): usage at the expiry instant
// goes to the next grant, usage just before it to the expiring one.
func TestEligibilityBoundaries(t *testing.T) {
	e := newEnv(t, 2*time.Hour)
	sub := "bounds"
	e.open(sub, Unfunded)
	e.grant(sub, "a", Promotional, c(10), t0.Add(-time.Hour), t0) // g1
	e.grant(sub, "b", Purchased, c(10), t0, time.Time{})          // g2
	e.clock.Set(t0.Add(time.Minute))
	r := e.apply(batch(sub, 0,
		line("x", 1, t0, c(1)),
		line("y", 2, t0.Add(-time.Millisecond), c(1)),
		line("z", 3, t0.Add(-time.Hour-time.Millisecond), c(1)), // before g1 was effective
	))[0]
	if !sameDraws(r.Lines[0].Draws, draws("g2", c(1))) || !sameDraws(r.Lines[1].Draws, draws("g1", c(1))) {
		t.Fatalf("draws %v / %v", r.Lines[0].Draws, r.Lines[1].Draws)
	}
	// Not from promotional g1; purchased g2 covers usage up to the grace
	// window before it was granted.
	if !sameDraws(r.Lines[2].Draws, draws("g2", c(1))) {
		t.Fatalf("before effective: %+v", r.Lines[2])
	}
}

// A refused deduction still records the breakage its script swept, and the
// stored state stays consistent with the ledger.
func TestRefusalKeepsSweep(t *testing.T) {
	e := newEnv(t, 0)
	sub := "refusal"
	e.open(sub, Unfunded)
	e.grant(sub, "p", Promotional, c(5), time.Time{}, t0.Add(time.Minute))
	e.grant(sub, "q", Purchased, c(5), time.Time{}, time.Time{})
	e.clock.Add(time.Minute)
	if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "d", Subscription: sub, Amount: c(-6), Reason: "r", Actor: "a"}); !errors.Is(err, ErrInsufficientBalance) {
		t.Fatalf("deduction: %v", err)
	}
	es := e.checkLedger(sub)
	if len(es) != 3 || es[2].Kind != "expiry" || es[2].Amount != c(-5) {
		t.Fatalf("ledger %+v", es)
	}
	// The key was not consumed by the refusal: the same key may succeed later.
	if r, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "d", Subscription: sub, Amount: c(-6), Reason: "r", Actor: "a", Force: true}); err != nil || r.Balance != c(-1) {
		t.Fatalf("forced: %+v %v", r, err)
	}
	e.checkLedger(sub)
}

// Redelivered lines that were not committed come back with their first
// results (journaled) and the ledger entries their first call wrote, so an
// archive that missed them can be completed; committed ones are forgotten.
func TestJournalReplaysFirstResults(t *testing.T) {
	e := newEnv(t, 0)
	sub := "journal"
	e.open(sub, Unfunded)
	e.grant(sub, "promo", Promotional, c(3), time.Time{}, time.Time{})
	e.grant(sub, "paid", Purchased, c(10), time.Time{}, time.Time{})
	var lines []Line
	for i := 0; i < 8; i++ {
		lines = append(lines, line(fmt.Sprint("j", i), int64(100+i), t0, c(2)))
	}
	b := batch(sub, 0, lines[:5]...)
	b.Committed = 100
	first := e.apply(b)[0]
	if len(first.Entries) != 1 || first.Entries[0].Kind != "usage" || first.Entries[0].Amount != -c(10) {
		t.Fatalf("first call's entries: %+v", first.Entries)
	}

	// The same offsets again, cut differently, with two new ones (a crash
	// before commit, then a restart from offset 100).
	b2 := batch(sub, 0, lines[2:7]...)
	b2.Committed = 100
	again := e.apply(b2)[0]
	for i, lr := range again.Lines {
		off := 2 + i
		if off < 5 {
			want := first.Lines[off]
			if lr.Status != DuplicateOffset || !lr.Journaled || !sameDraws(lr.Draws, want.Draws) || lr.Balance != want.Balance || lr.Unfunded != want.Unfunded {
				t.Fatalf("offset %d replayed as %+v, first %+v", 100+off, lr, want)
			}
			continue
		}
		if lr.Status != Applied {
			t.Fatalf("offset %d: %s", 100+off, lr.Status)
		}
	}
	// Offset 102 drew purchased credits; 101 took the last promotional one first.
	if d := again.Lines[0].Draws; len(d) != 1 || d[0].Amount != c(2) {
		t.Fatalf("offset 102 draws %+v", d)
	}
	if !sameDraws(first.Lines[1].Draws, draws("g1", c(1), "g2", c(1))) {
		t.Fatalf("offset 101 draws %+v", first.Lines[1].Draws)
	}
	// The replay reports the first call's usage entry beside its own.
	var kinds []string
	for _, en := range again.Entries {
		kinds = append(kinds, fmt.Sprint(en.Seq, en.Kind))
	}
	if len(again.Entries) != 2 || again.Entries[0].Seq != first.Entries[0].Seq {
		t.Fatalf("replay entries %v, first %d", kinds, first.Entries[0].Seq)
	}

	// Once offsets up to 107 are committed, their records are dropped.
	b3 := batch(sub, 0, lines[7])
	b3.Committed = 107
	e.apply(b3)
	b4 := batch(sub, 0, lines[4:7]...)
	b4.Committed = 107
	for _, lr := range e.apply(b4)[0].Lines {
		if lr.Status != DuplicateOffset || lr.Journaled {
			t.Fatalf("committed offsets still journaled: %+v", lr)
		}
	}
	n, err := e.rc.LLen(e.ctx, e.s.applyKeys(&b4).Journal).Result()
	if err != nil || n != 1 {
		t.Fatalf("journal holds %d records (%v), want only the uncommitted one", n, err)
	}
	e.checkLedger(sub)
}

// A lost account restored from its remainders, debt, unfunded total, last
// ledger seq and watermarks behaves as the original: same balance and
// grants, redelivered offsets skipped, the ledger continuing in sequence.
func TestRestoreLostAccount(t *testing.T) {
	e := newEnv(t, 0)
	sub := "restore"
	e.open(sub, Unfunded, func(a *AccountSpec) { a.LowThreshold = c(20) })
	e.grant(sub, "promo", Promotional, c(30), time.Time{}, t0.Add(48*time.Hour))
	e.grant(sub, "paid", Purchased, c(100), time.Time{}, time.Time{})
	var lines []Line
	for i := 0; i < 10; i++ {
		lines = append(lines, line(fmt.Sprint("r", i), int64(i), t0, c(4)))
	}
	e.apply(batch(sub, 2, lines...))
	before := e.balance(sub)
	last := e.ledger(sub)
	spec := RestoreSpec{Account: AccountSpec{Subscription: sub, Customer: "cust", Policy: Unfunded, LowThreshold: c(20), Currency: "USD", CreditValue: decimal.NewFromInt(1)},
		LastSeq: last[len(last)-1].Seq, Unfunded: before.Unfunded, Debt: before.Debt, Watermarks: map[string]int64{"usage-events/2": 9}}
	for _, g := range before.Grants {
		spec.Grants = append(spec.Grants, RestoreGrant{ID: g.ID, Type: g.Type, Amount: g.Amount, Remaining: g.Remaining, EffectiveAt: g.EffectiveAt, ExpiresAt: g.ExpiresAt})
	}
	if _, err := e.s.Restore(e.ctx, spec); !errors.Is(err, ErrConflict) {
		t.Fatalf("restore over a live account: %v, want ErrConflict", err)
	}
	cleanup(e.rc, e.pfx) // Redis loses everything
	res, err := e.s.Restore(e.ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	after := e.balance(sub)
	if res.Balance != before.Total || after.Total != before.Total || after.Available != before.Available || fmt.Sprint(after.Grants) != fmt.Sprint(before.Grants) {
		t.Fatalf("restored %+v\noriginal %+v", after, before)
	}
	// Redelivered offsets change nothing; new ones apply; the ledger goes on.
	r := e.apply(batch(sub, 2, append(lines[8:], line("r10", 10, t0, c(4)))...))[0]
	if r.Lines[0].Status != DuplicateOffset || r.Lines[1].Status != DuplicateOffset || r.Lines[2].Status != Applied {
		t.Fatalf("after restore: %+v", r.Lines)
	}
	if r.FirstSeq != spec.LastSeq+1 || r.Balance != before.Total-c(4) {
		t.Fatalf("ledger resumed at %d (want %d), balance %s", r.FirstSeq, spec.LastSeq+1, r.Balance)
	}
	bad := spec
	bad.Grants = []RestoreGrant{{ID: "x", Type: Promotional, Amount: c(1), Remaining: c(1)}}
	bad.Account.Subscription = "restore-bad"
	if _, err := e.s.Restore(e.ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a grant id not of the ledger: %v, want ErrInvalid", err)
	}
}

// Issue 13 item 6b: an event stamped 44 ms before a top-up, applied after
// it, is covered by the top-up: purchased and adjustment grants cover usage
// dated up to the grace window before they were granted. Promotional
// grants keep their exact effective time.
func TestGrantsCoverGraceBefore(t *testing.T) {
	e := newEnv(t, 15*time.Minute)
	for _, tc := range []struct {
		name   string
		give   func(sub string)
		funded bool
	}{
		{"topup", func(sub string) {
			if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t", Subscription: sub, Amount: c(100)}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"adjustment", func(sub string) {
			if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "a", Subscription: sub, Amount: c(100), Reason: "r", Actor: "x"}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"promotional", func(sub string) { e.grant(sub, "p", Promotional, c(100), e.clock.Now(), time.Time{}) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := "early-" + tc.name
			e.open(sub, Unfunded)
			e.clock.Set(t0)
			ts := e.clock.Now()
			e.clock.Add(44 * time.Millisecond)
			tc.give(sub)
			e.clock.Add(time.Second)
			r := e.apply(batch(sub, 0, line("x", 1, ts, c(1)), line("y", 2, t0.Add(-20*time.Minute), c(1))))[0]
			for i, l := range r.Lines {
				if tc.funded && (len(l.Draws) != 1 || l.Unfunded != 0) {
					t.Errorf("line %d: %+v, want drawn from the grant", i, l)
				}
				if !tc.funded && (len(l.Draws) != 0 || l.Unfunded != c(1)) {
					t.Errorf("line %d: %+v, want unfunded", i, l)
				}
			}
			e.checkLedger(sub)
		})
	}
	// A purchased grant effective later than the grace window ahead is not
	// spendable yet; within it, it is (the first event of a subscription
	// that starts in a moment).
	sub := "scheduled"
	e.open(sub, Unfunded)
	e.clock.Set(t0)
	e.grant(sub, "soon", Purchased, c(5), t0.Add(10*time.Minute), time.Time{})
	e.grant(sub, "later", Purchased, c(7), t0.Add(16*time.Minute), time.Time{})
	if v := e.balance(sub); v.Available != c(5) || v.Total != c(12) {
		t.Errorf("available %s total %s, want 5 of 12", v.Available, v.Total)
	}
	r := e.apply(batch(sub, 0, line("z", 1, t0, c(6))))[0]
	if !sameDraws(r.Lines[0].Draws, draws("g1", c(5))) || r.Lines[0].Unfunded != c(1) {
		t.Errorf("draws %+v", r.Lines[0])
	}
}
