package balance

import (
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
)

func uline(id string, off int64, ts time.Time, period time.Time, value string) Line {
	l := line(id, off, ts, c(2))
	l.Unique = []UniquePart{{Meter: "active-users", Period: period, PeriodEnd: period.AddDate(0, 1, 0), Value: value, Credits: c(2)}}
	return l
}

// TestUniqueCountChargesFirstValueOnce: a value is charged the first time
// it appears in its period, not again for another event, a redelivery or a
// producer duplicate; a new period charges it again; the memory expires
// UniqueKeep after the period.
func TestUniqueCountChargesFirstValueOnce(t *testing.T) {
	e := newEnv(t, 15*time.Minute)
	e.open("s1", Unfunded)
	e.grant("s1", "g", Promotional, c(100), t0.Add(-time.Hour), time.Time{})
	p1, p2 := t0.Add(-24*time.Hour), t0.AddDate(0, 1, 0).Add(-24*time.Hour)
	// u-1 twice and u-2 once in one batch: 4 credits, line 2 a repeat
	r := e.apply(batch("s1", 0, uline("e1", 1, t0, p1, "u-1"), uline("e2", 2, t0, p1, "u-1"), uline("e3", 3, t0, p1, "u-2")))[0]
	if r.Balance != c(96) || r.Lines[0].Repeats != 0 || r.Lines[1].Repeats != 1 || r.Lines[2].Repeats != 0 || len(r.Lines[1].Draws) != 0 {
		t.Fatalf("first batch: balance %s, lines %+v", r.Balance, r.Lines)
	}
	// the batch redelivered: journaled first results, nothing charged again
	r = e.apply(batch("s1", 0, uline("e1", 1, t0, p1, "u-1"), uline("e2", 2, t0, p1, "u-1"), uline("e3", 3, t0, p1, "u-2")))[0]
	if r.Balance != c(96) || r.Lines[1].Status != DuplicateOffset || !r.Lines[1].Journaled || r.Lines[1].Repeats != 1 || r.Lines[0].Repeats != 0 {
		t.Fatalf("redelivery: balance %s, lines %+v", r.Balance, r.Lines)
	}
	// a producer duplicate of e3 on another partition: not charged, and a
	// duplicate of a new value does not enter the memory either
	r = e.apply(batch("s1", 1, uline("e3", 1, t0, p1, "u-2"), uline("e4", 2, t0, p1, "u-3"), uline("e4", 3, t0, p1, "u-3")))[0]
	if r.Balance != c(94) || r.Lines[0].Status != DuplicateID || r.Lines[1].Repeats != 0 || r.Lines[2].Status != DuplicateID {
		t.Fatalf("duplicates: balance %s, lines %+v", r.Balance, r.Lines)
	}
	// the next period counts u-1 again, once
	r = e.apply(batch("s1", 1, uline("e5", 4, t0, p2, "u-1"), uline("e6", 5, t0, p2, "u-1")))[0]
	if r.Balance != c(92) || r.Lines[0].Repeats != 0 || r.Lines[1].Repeats != 1 {
		t.Fatalf("second period: balance %s, lines %+v", r.Balance, r.Lines)
	}
	// the memory is one set per period, kept UniqueKeep past its end
	key := e.s.uniqueKey("s1", "active-users", p1.UnixMilli())
	if n := e.rc.SCard(e.ctx, key).Val(); n != 3 {
		t.Errorf("period 1 holds %d values, want 3", n)
	}
	want := p1.AddDate(0, 1, 0).Add(UniqueKeep).Sub(e.clock.Now())
	if ttl := e.rc.PTTL(e.ctx, key).Val(); ttl > want || ttl < want-5*time.Second {
		t.Errorf("period 1 memory expires in %v, want %v", ttl, want)
	}
	// the usage entries counted every event, charged only first values
	var used credit.Amount
	for _, en := range e.ledger("s1") {
		if en.Kind == "usage" {
			used -= en.Amount
		}
	}
	if used != c(8) {
		t.Errorf("usage %s, want 8", used)
	}
	// a value for a period whose memory has expired is not charged
	old := t0.AddDate(0, -3, 0)
	r = e.apply(batch("s1", 2, uline("e7", 1, t0, old, "u-9")))[0]
	if r.Balance != c(92) || r.Lines[0].Repeats != 1 {
		t.Fatalf("expired period: balance %s, lines %+v", r.Balance, r.Lines)
	}
}

// TestUniqueCountMixedLine: an event charged by a COUNT meter and two
// UNIQUE_COUNT meters pays only the parts whose values are new.
func TestUniqueCountMixedLine(t *testing.T) {
	e := newEnv(t, 15*time.Minute)
	e.open("s1", Unfunded)
	e.grant("s1", "g", Promotional, c(100), t0.Add(-time.Hour), time.Time{})
	mk := func(id string, off int64, user, team string) Line {
		l := line(id, off, t0, c(1)+c(2)+c(5))
		l.Unique = []UniquePart{
			{Meter: "users", Period: t0, PeriodEnd: t0.AddDate(0, 1, 0), Value: user, Credits: c(2)},
			{Meter: "teams", Period: t0, PeriodEnd: t0.AddDate(0, 1, 0), Value: team, Credits: c(5)},
		}
		return l
	}
	r := e.apply(batch("s1", 0, mk("e1", 1, "u", "t"), mk("e2", 2, "u", "t2"), mk("e3", 3, "u", "t")))[0]
	if r.Balance != c(100-8-6-1) || r.Lines[1].Repeats != 1 || r.Lines[2].Repeats != 3 {
		t.Fatalf("balance %s, lines %+v", r.Balance, r.Lines)
	}
	bad := mk("e4", 4, "u", "t")
	bad.Credits = c(3) // less than its parts
	if _, err := e.s.Apply(e.ctx, []Batch{batch("s1", 0, bad)}); err == nil {
		t.Error("a line whose parts exceed its credits was accepted")
	}
}
