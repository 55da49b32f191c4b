package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/reconcile"
)

// Redis loses the UNIQUE_COUNT write of an archived, committed event (bob)
// and, on the lost state, counts a value (cat) in an event past the
// archive's snapshot, archived but not in the ledger the repair restores.
// The repair puts bob back into the period's set and takes cat out: bob
// again is not charged, cat's event replayed from Kafka is, once.
func TestRepairRestoresUniqueCountSets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const sub = "uq"
	e.account(sub) // offsets 0..2 of usage-events, archived
	period := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	login := func(id string, off int64, user string) balance.Batch {
		l := balance.Line{EventID: id, Offset: off, Time: time.Now(), Credits: credit.Credits(2),
			Unique: []balance.UniquePart{{Meter: "active-users", Period: period, PeriodEnd: period.AddDate(0, 1, 0), Value: user, Credits: credit.Credits(2)}}}
		return balance.Batch{Subscription: sub, Topic: "usage-events", Lines: []balance.Line{l}}
	}
	apply := func(b balance.Batch, archiveIt bool) balance.BatchResult {
		t.Helper()
		res, err := e.store.Apply(ctx, []balance.Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		if archiveIt { // the engine's row: the value and its period, when counted
			l := b.Lines[0]
			row := archive.RatedRow{EventID: l.EventID, CustomerID: "c-" + sub, SubscriptionID: sub, Feature: "active-users", EventName: "login",
				Credits: l.Credits, EventTime: l.Time, RatedAt: time.Now(), Status: archive.StatusApplied, Topic: b.Topic, Offset: l.Offset}
			if res[0].Lines[0].Repeats == 0 {
				row.UniqueValue, row.UniquePeriod, row.UniquePeriodEnd = l.Unique[0].Value, l.Unique[0].Period, l.Unique[0].PeriodEnd
			}
			if err := e.w.WriteUsage(ctx, []archive.RatedRow{row}); err != nil {
				t.Fatal(err)
			}
		}
		return res[0]
	}
	total := func() credit.Amount {
		t.Helper()
		v, err := e.store.Balance(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		return v.Total
	}

	apply(login("a1", 3, "ann"), true)
	e.export(sub)
	keys, err := testenv.Keys(ctx, e.rc, e.pfx+"{"+sub+"}*")
	if err != nil {
		t.Fatal(err)
	}
	saved := map[string]string{}
	for _, k := range keys {
		if saved[k], err = e.rc.Dump(ctx, k).Result(); err != nil {
			t.Fatal(err)
		}
	}
	apply(login("b1", 4, "bob"), true)
	e.export(sub)
	want := total()

	// Redis comes back as it was before bob, then counts cat (offset 5) on
	// that lost state; cat's row is archived, its ledger entry refused
	now, _ := testenv.Keys(ctx, e.rc, e.pfx+"{"+sub+"}*")
	e.rc.Del(ctx, now...)
	for k, v := range saved {
		if err := e.rc.Restore(ctx, k, 0, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	apply(login("c1", 5, "cat"), true)

	r := &reconcile.Repairer{Store: e.store, Conn: e.conn}
	if _, repaired, err := r.Repair(ctx, sub); err != nil || !repaired {
		t.Fatalf("repair: %v, repaired %v", err, repaired)
	}
	if got := total(); got != want {
		t.Fatalf("balance %s after the repair, %s before the loss", got, want)
	}
	for _, c := range []struct {
		b       balance.Batch
		charged bool
	}{
		{login("c1", 5, "cat"), true}, // replayed from Kafka
		{login("b2", 6, "bob"), false},
		{login("a2", 7, "ann"), false},
		{login("c2", 8, "cat"), false},
	} {
		before := total()
		res := apply(c.b, false)
		if got := before - total(); (got == credit.Credits(2)) != c.charged || got != 0 && got != credit.Credits(2) {
			t.Errorf("%s (%s): charged %s, want charged=%v (%+v)", c.b.Lines[0].EventID, c.b.Lines[0].Unique[0].Value, got, c.charged, res.Lines[0])
		}
	}
}
