package balance

import (
	"fmt"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// DueForExpiry finds the subscriptions whose soonest live grant is past
// expiry + grace from the account's nexp field, and Expire reports the
// ledger entries it wrote so a sweep can archive them.
func TestDueForExpiryAndExpireEntries(t *testing.T) {
	e := newEnv(t, 10*time.Minute)
	id := testenv.RandomID(t)
	soon, later, never, spent, legacy, none := "soon-"+id, "later-"+id, "never-"+id, "spent-"+id, "legacy-"+id, "none-"+id
	for _, s := range []string{soon, later, never, spent, legacy} {
		e.open(s, Unfunded)
	}
	e.grant(soon, "p", Promotional, c(30), t0, t0.Add(2*time.Hour))
	e.grant(soon, "q", Promotional, c(20), t0, t0.Add(time.Hour))
	e.grant(soon, "n", Purchased, c(5), t0, time.Time{})
	e.grant(later, "p", Promotional, c(10), t0, t0.Add(5*time.Hour))
	e.grant(never, "n", Purchased, c(10), t0, time.Time{})
	e.grant(spent, "p", Promotional, c(10), t0, t0.Add(time.Hour))
	e.apply(batch(spent, 0, line("u", 1, t0, c(10)))) // used up: nothing left to expire
	e.grant(legacy, "n", Purchased, c(10), t0, time.Time{})
	e.rc.HDel(e.ctx, e.s.keys(legacy).Account, "nexp") // an account written before the field existed
	all := []string{soon, later, never, spent, legacy, none}

	due := func() string {
		t.Helper()
		d, err := e.s.DueForExpiry(e.ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(d)
	}
	e.clock.Set(t0.Add(time.Hour + 10*time.Minute - time.Millisecond)) // q expired, still in grace
	if got := due(); got != fmt.Sprint([]string{legacy}) {
		t.Fatalf("in grace: due %s", got)
	}
	if r, err := e.s.Expire(e.ctx, legacy); err != nil || r.FirstSeq != 0 {
		t.Fatalf("legacy expire %+v %v", r, err)
	}
	e.clock.Add(time.Millisecond)
	if got := due(); got != fmt.Sprint([]string{soon}) {
		t.Fatalf("after grace: due %s", got)
	}
	r, err := e.s.Expire(e.ctx, soon)
	if err != nil || r.FirstSeq != r.Seq || r.Balance != c(35) {
		t.Fatalf("expire %+v %v", r, err)
	}
	es, _ := e.s.Ledger(e.ctx, soon, r.FirstSeq, 10)
	if len(es) != 1 || es[0].Kind != "expiry" || es[0].Amount != c(-20) {
		t.Fatalf("entries %+v", es)
	}
	if got := due(); got != "[]" { // the next expiry, p at +2h, is not due
		t.Fatalf("after expire: due %s", got)
	}
	e.clock.Set(t0.Add(2*time.Hour + 10*time.Minute))
	if got := due(); got != fmt.Sprint([]string{soon}) {
		t.Fatalf("second grant: due %s", got)
	}
	if r, err := e.s.Expire(e.ctx, soon); err != nil || r.FirstSeq == 0 {
		t.Fatalf("second expire %+v %v", r, err)
	}
	if r, err := e.s.Expire(e.ctx, soon); err != nil || r.FirstSeq != 0 {
		t.Fatalf("repeated expire wrote entries: %+v %v", r, err)
	}
	e.checkLedger(soon)
}
