package balance

import (
	"fmt"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

// What a change should tell is recorded with it, in the account: nothing
// for usage that crosses nothing (the hot path), the crossing, exhaustion
// and breakage when they happen, each with the ledger seq of its change; a
// drain acknowledges what it read and leaves what came after.
func TestNotesRecordedWithTheChange(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.open("n1", Overage, func(a *AccountSpec) { a.LowThreshold = credit.Credits(10) })
	e.grant("n1", "inc", Promotional, credit.Credits(30), t0, time.Time{})
	notes := func() []PendingNotes {
		t.Helper()
		ps, err := e.s.Notes(e.ctx, []string{"n1", "none"})
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	if ps := notes(); len(ps) != 0 {
		t.Fatalf("notes after opening and granting: %+v, want none", ps)
	}
	e.apply(batch("n1", 0, line("a", 1, t0, credit.Credits(5))))
	if ps := notes(); len(ps) != 0 {
		t.Fatalf("notes after usage that crossed nothing: %+v", ps)
	}
	r := e.apply(batch("n1", 0, line("b", 2, t0, credit.Credits(20))))[0]
	promo := e.grant("n1", "promo", Promotional, credit.Credits(2), t0, t0.Add(time.Hour))
	e.clock.Add(2 * time.Hour)
	x := e.apply(batch("n1", 0, line("c", 3, e.clock.Now(), credit.Credits(8))))[0]
	ps := notes()
	want := fmt.Sprint([]Note{{Kind: NoteLow, Seq: r.LastSeq, Balance: credit.Credits(5)},
		{Kind: NoteExpired, Seq: x.FirstSeq, Balance: credit.Credits(5), Ref: promo.GrantID, Amount: credit.Credits(2)},
		{Kind: NoteExhausted, Seq: x.LastSeq, Balance: credit.Credits(-3)}})
	if len(ps) != 1 || ps[0].Customer != "cust-n1" || fmt.Sprint(ps[0].Notes) != want {
		t.Fatalf("notes %+v, want %s", ps, want)
	}
	// a top-up after the drain read: acknowledging keeps it
	top, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "t", Subscription: "n1", Amount: credit.Credits(50)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.AckNotes(e.ctx, ps[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.s.AckNotes(e.ctx, ps[0]); err != nil { // a second drain's ack: nothing
		t.Fatal(err)
	}
	ps = notes()
	want = fmt.Sprint([]Note{{Kind: NoteTopUp, Seq: top.Seq, Balance: credit.Credits(47), Ref: top.GrantID, Amount: credit.Credits(50)},
		{Kind: NoteRecovered, Seq: top.Seq, Balance: credit.Credits(47)}})
	if len(ps) != 1 || fmt.Sprint(ps[0].Notes) != want {
		t.Fatalf("notes after the ack %+v, want %s", ps, want)
	}
	if err := e.s.AckNotes(e.ctx, ps[0]); err != nil {
		t.Fatal(err)
	}
	if ps := notes(); len(ps) != 0 {
		t.Fatalf("notes after the last ack: %+v", ps)
	}
}

// Undrained records are capped (the oldest dropped), so an account nobody
// drains stays small.
func TestNotesCapped(t *testing.T) {
	e := newEnv(t, 0)
	e.open("c1", Overage, func(a *AccountSpec) { a.LowThreshold = credit.Credits(10) })
	e.grant("c1", "inc", Promotional, credit.Credits(5), t0, time.Time{})
	var last int64
	for i := range 40 { // each round: top-up (T, U), usage (L): 3 records
		if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: fmt.Sprint("t", i), Subscription: "c1", Amount: credit.Credits(10)}); err != nil {
			t.Fatal(err)
		}
		last = e.apply(batch("c1", 0, line(fmt.Sprint("u", i), int64(i), t0, credit.Credits(10))))[0].LastSeq
	}
	ps, err := e.s.Notes(e.ctx, []string{"c1"})
	if err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	n := ps[0].Notes
	if len(n) != 64 || n[len(n)-1].Seq != last || n[len(n)-1].Kind != NoteLow {
		t.Fatalf("%d records kept, last %+v; want the newest 64, ending with the crossing at %d", len(n), n[len(n)-1], last)
	}
}

// The cap drops only records of earlier calls: a call's own are all kept,
// so an expiry sweep that ends more grants at once than the cap (up to
// MaxGrants live, 100 by default) records every breakage.
func TestNotesOfOneCallAllKept(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.open("c2", Overage)
	e.grant("c2", "inc", Promotional, credit.Credits(1000), t0, time.Time{})
	for i := range 90 {
		e.grant("c2", fmt.Sprint("p", i), Promotional, credit.Credits(1), t0, t0.Add(time.Hour))
	}
	e.clock.Add(2 * time.Hour)
	if _, err := e.s.Expire(e.ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	ps, err := e.s.Notes(e.ctx, []string{"c2"})
	if err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	expired := 0
	for _, n := range ps[0].Notes {
		if n.Kind == NoteExpired {
			expired++
		}
	}
	if expired != 90 {
		t.Fatalf("%d grant.expired records of 90 grants expired in one call", expired)
	}
}
