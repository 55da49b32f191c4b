package balance

import (
	"errors"
	"fmt"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"testing"
	"time"
)

// lose snapshots every key of sub now and returns a function that puts
// Redis back to that state, as a restart from an older AOF or a failover
// to a lagging replica would.
func (e *env) lose(sub string) func() {
	e.t.Helper()
	pat := e.pfx + "{" + sub + "}*"
	keys, err := testenv.Keys(e.ctx, e.rc, pat) // a test keyspace of a few keys
	if err != nil {
		e.t.Fatal(err)
	}
	dumps := map[string]string{}
	for _, k := range keys {
		d, err := e.rc.Dump(e.ctx, k).Result()
		if err != nil {
			e.t.Fatal(err)
		}
		dumps[k] = d
	}
	return func() {
		e.t.Helper()
		now, err := testenv.Keys(e.ctx, e.rc, pat)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, k := range now {
			e.rc.Del(e.ctx, k)
		}
		for k, d := range dumps {
			if err := e.rc.Restore(e.ctx, k, 0, d).Err(); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// archiveOf is what an archive holds: the entries after keep, and the ids
// of the applied events.
func repairSpec(sub string, found, keep int64, archived []Entry, ids ...string) RepairSpec {
	var es []Entry
	for _, x := range archived {
		if x.Seq > keep {
			es = append(es, x)
		}
	}
	return RepairSpec{Subscription: sub, Found: found, Keep: keep, Entries: es, EventIDs: ids}
}

// Redis loses the writes after a point: Repair brings back the archive's
// entries, balance, grants, watermarks, idempotency records and dedupe
// memory, so redelivery, producer duplicates and retried top-ups still
// count once; entries Redis wrote on the lost state are discarded.
func TestRepairAfterLostWrites(t *testing.T) {
	for _, diverged := range []bool{false, true} {
		t.Run(fmt.Sprintf("diverged=%v", diverged), func(t *testing.T) {
			e := newEnv(t, 0)
			sub := "s"
			e.open(sub, Unfunded, func(a *AccountSpec) { a.TopUpMin = c(1) })
			e.grant(sub, "g1", Promotional, c(50), t0, time.Time{})
			e.apply(batch(sub, 0, line("e1", 0, t0, c(5)), line("e2", 1, t0, c(5))))
			restore := e.lose(sub)
			found := e.balance(sub)
			_ = found

			// acknowledged and archived, then lost
			e.apply(batch(sub, 0, line("e3", 2, t0, c(7)), line("e4", 3, t0, c(1))))
			if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "k1", Subscription: sub, Amount: c(20)}); err != nil {
				t.Fatal(err)
			}
			e.apply(batch(sub, 0, line("e5", 4, t0, c(30))))
			archived := e.checkLedger(sub)
			want := e.balance(sub)
			restore()
			lost := e.ledger(sub)
			keep := lost[len(lost)-1].Seq

			if diverged {
				// written on the lost state before anyone noticed: reuses seqs
				e.apply(batch(sub, 0, line("x1", 5, t0, c(2))))
				if _, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "adj", Subscription: sub, Amount: c(3), Reason: "r", Actor: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			heads, err := e.s.Heads(e.ctx, []string{sub}, []int64{archived[len(archived)-1].Seq})
			if err != nil {
				t.Fatal(err)
			}
			h := heads[0]
			if h.Entry != nil && h.Entry.Balance == archived[len(archived)-1].Balance && h.Entry.Time.Equal(archived[len(archived)-1].Time) && !diverged {
				t.Fatalf("Heads shows the lost entry: %+v", h)
			}
			// a stale caller is refused before applying
			_, err = e.s.Apply(e.ctx, []Batch{{Subscription: sub, Topic: "usage-events", Partition: 0, Expect: archived[len(archived)-1].Seq,
				Lines: []Line{line("y", 9, t0, c(1))}}})
			if !diverged && !errors.Is(err, ErrBehind) {
				t.Fatalf("apply expecting seq %d on a ledger at %d: %v, want ErrBehind", archived[len(archived)-1].Seq, keep, err)
			}

			if _, err := e.s.Repair(e.ctx, repairSpec(sub, h.Seq+1, keep, archived, "e3", "e4", "e5")); !errors.Is(err, ErrConflict) {
				t.Fatalf("repair with a stale Found: %v, want ErrConflict", err)
			}
			spec := repairSpec(sub, h.Seq, keep, archived, "e3", "e4", "e5")
			if diverged {
				spec.ForgetIDs = []string{"x1"} // applied on the lost state: its redelivery must count
			}
			if _, err := e.s.Repair(e.ctx, spec); err != nil {
				t.Fatal(err)
			}
			got := e.balance(sub)
			if got.Total != want.Total || got.Available != want.Available || fmt.Sprint(got.Grants) != fmt.Sprint(want.Grants) {
				t.Fatalf("after repair %+v, want %+v", got, want)
			}
			after := e.checkLedger(sub)
			if len(after) != len(archived) {
				t.Fatalf("ledger after repair has %d entries, archive %d", len(after), len(archived))
			}
			for i := range after {
				if after[i].Seq != archived[i].Seq || after[i].Amount != archived[i].Amount || after[i].Balance != archived[i].Balance {
					t.Fatalf("entry %d after repair %+v, archived %+v", i, after[i], archived[i])
				}
			}
			// redelivered, duplicated and retried: nothing counts twice
			r := e.apply(batch(sub, 0, line("e3", 2, t0, c(7)), line("e5", 4, t0, c(30)), line("e4", 10, t0, c(1)), line("e6", 11, t0, c(2))))
			st := ""
			for _, l := range r[0].Lines {
				st += string(l.Status)
			}
			if st != "OOIA" {
				t.Fatalf("statuses after repair %q, want OOIA (redelivered, redelivered, duplicate id, new)", st)
			}
			tu, err := e.s.TopUp(e.ctx, TopUpRequest{Key: "k1", Subscription: sub, Amount: c(20)})
			if err != nil || !tu.Replayed {
				t.Fatalf("retried top-up after repair: %+v, %v; want the first result replayed", tu, err)
			}
			if v := e.balance(sub); v.Total != want.Total-c(2) {
				t.Fatalf("balance %s, want %s", v.Total, want.Total-c(2))
			}
			if diverged {
				r := e.apply(batch(sub, 0, line("x1", 12, t0, c(2))))
				if r[0].Lines[0].Status != Applied {
					t.Fatalf("the event applied on the lost state, redelivered after the repair: %s, want applied", r[0].Lines[0].Status)
				}
				want.Total -= c(2)
				// the adjustment made on the lost state is gone with its key
				res, err := e.s.Adjust(e.ctx, AdjustRequest{Key: "adj", Subscription: sub, Amount: c(3), Reason: "r", Actor: "a"})
				if err != nil || res.Replayed {
					t.Fatalf("adjustment retried after repair: %+v, %v; want it applied anew", res, err)
				}
			}
			e.checkLedger(sub)
		})
	}
}
