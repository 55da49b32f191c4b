package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/reconcile"
)

// Redis loses acknowledged writes (restarted from a copy of its data taken
// before the second half of the stream, the engine stopped): reconcile
// reports every subscription that received events since, and no other;
// --repair rebuilds them from the archive and reconcile passes, with the
// balances the engine had reached before the loss.
func TestReconcileSeesLostRedisWrites(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := e2e.NewOn(t, 2, e2e.Private(srv.Addr, srv.Client()))
	h.Subscribe(20)
	st := h.Generate(11, 3_000, 40, 0)
	half := len(st.Msgs) / 2
	// After the copy only the even customers get events.
	var second []kafka.Message
	affected := map[string]bool{}
	custs := make([]string, 0, len(h.Subs))
	for c := range h.Subs {
		custs = append(custs, c)
	}
	sort.Strings(custs)
	even := map[string]bool{}
	for i, c := range custs {
		even[c] = i%2 == 0
	}
	for _, m := range st.Msgs[half:] {
		if even[string(m.Key)] {
			second = append(second, m)
			affected[h.Subs[string(m.Key)].Sub] = true
		}
	}

	const group = "reconcile-loss"
	e, _, src := h.NewEngine(group, engine.Config{BatchSize: 200})
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	h.Produce(st.Msgs[:half])
	h.WaitGroupDone(group, 2*time.Minute)
	copied := srv.Copy() // Redis as it will come back
	h.Produce(second)
	h.WaitGroupDone(group, 2*time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("engine: %v", err)
	}
	want := map[string]credit.Amount{}
	for _, x := range h.Subs {
		v, err := h.Balances.Balance(context.Background(), x.Sub)
		if err != nil {
			t.Fatal(err)
		}
		want[x.Sub] = v.Total
	}
	srv.RestartFrom(copied)

	bg := context.Background()
	for _, deep := range []bool{false, true} {
		rep, err := reconcile.Run(bg, h.Balances, h.Conn, reconcile.Options{Deep: deep})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, d := range rep.Drift {
			got[d.Subscription] = true
			if !affected[d.Subscription] {
				t.Errorf("deep=%v: %s drifts but got no event after the copy: %+v", deep, d.Subscription, d)
			}
			if !d.RedisBehind || !d.Drifts() {
				t.Errorf("deep=%v: %s: not reported as Redis behind the archive: %+v", deep, d.Subscription, d)
			}
		}
		for s := range affected {
			if !got[s] {
				t.Errorf("deep=%v: %s lost writes and is not reported", deep, s)
			}
		}
		if rep.Checked != len(h.Subs) {
			t.Errorf("checked %d of %d subscriptions", rep.Checked, len(h.Subs))
		}
	}

	rep, err := reconcile.Run(bg, h.Balances, h.Conn, reconcile.Options{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Drift) != len(affected) {
		t.Errorf("repair reported %d subscriptions, want the %d that lost writes", len(rep.Drift), len(affected))
	}
	for _, d := range rep.Drift {
		if !d.RedisRepaired || d.Drifts() {
			t.Errorf("%s after --repair: %+v", d.Subscription, d)
		}
	}
	if rep, err = reconcile.Run(bg, h.Balances, h.Conn, reconcile.Options{Deep: true}); err != nil || len(rep.Drift) != 0 || rep.ChargesUnchecked != 0 {
		t.Fatalf("reconcile after the repair: %v %+v, %d without the charge comparison", err, rep.Drift, rep.ChargesUnchecked)
	}
	for sub, w := range want {
		v, err := h.Balances.Balance(bg, sub)
		if err != nil {
			t.Fatal(err)
		}
		if v.Total != w {
			t.Errorf("%s: balance %s after the repair, %s before the loss", sub, v.Total, w)
		}
	}
}

// The archive the old writer left after Redis lost writes: entries written
// on the lost state replaced the archived ones at the same seqs, so the
// ledger, Redis and their sums agree while the events of the lost batch
// were rated and never charged. Only the per-event comparison with
// rated_usage sees it; nothing repairs the archive, so it stays reported.
// Rated rows whose ledger entry is not archived yet are in flight within
// the lag, drift after it.
func TestReconcileComparesPerEventCharges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.account("healthy")
	e.account("rewritten")
	e.account("inflight")
	use := func(sub string, expect int64, offsets ...int64) balance.BatchResult {
		t.Helper()
		b := balance.Batch{Subscription: sub, Topic: "usage-events", Expect: expect}
		for _, o := range offsets {
			b.Lines = append(b.Lines, balance.Line{EventID: fmt.Sprint(sub, "-", o), Offset: o, Time: time.Now(), Credits: credit.MustParse("2.5")})
		}
		res, err := e.store.Apply(ctx, []balance.Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		e.rated(b, res[0])
		return res[0]
	}
	archiveEntries := func(sub string, res balance.BatchResult) error {
		var rows []archive.LedgerRow
		for _, en := range res.Entries {
			rows = append(rows, accounts.LedgerRow(sub, "c-"+sub, en))
		}
		return e.w.WriteLedger(ctx, rows)
	}

	restore := e.lose("rewritten")
	lost := use("rewritten", 0, 10, 11) // archived, then lost by Redis
	if err := archiveEntries("rewritten", lost); err != nil {
		t.Fatal(err)
	}
	restore()
	again := use("rewritten", 0, 12) // on the lost state: reuses the seq
	if err := archiveEntries("rewritten", again); !errors.Is(err, archive.ErrLedgerConflict) {
		t.Fatalf("archiving a reused seq: %v, want ErrLedgerConflict", err)
	}
	for _, en := range again.Entries {
		rewriteArchived(t, e.conn, accounts.LedgerRow("rewritten", "c-rewritten", en)) // as the old writer did
	}
	inflight := use("inflight", 0, 20) // rated rows archived, ledger entry not yet

	// Redis loses a batch and takes another on the lost state; the archive
	// refuses its entry (the reused seq), its rated row is archived.
	e.account("diverged")
	restore = e.lose("diverged")
	if err := archiveEntries("diverged", use("diverged", 0, 30)); err != nil {
		t.Fatal(err)
	}
	restore()
	if err := archiveEntries("diverged", use("diverged", 0, 31, 32)); !errors.Is(err, archive.ErrLedgerConflict) {
		t.Fatalf("archiving a reused seq: %v, want ErrLedgerConflict", err)
	}
	if g := e.run(reconcile.Options{})["diverged"]; !g.RedisBehind || g.Charges == nil || g.Charges.Uncharged != 2 {
		t.Errorf("diverged: %+v, charges %+v; want Redis behind and 2 events rated, not charged", g, g.Charges)
	}
	if g := e.run(reconcile.Options{Repair: true, Subscriptions: []string{"diverged"}})["diverged"]; !g.RedisRepaired || g.RedisBehind ||
		fmt.Sprint(g.Kinds()) != "[charges]" {
		t.Errorf("diverged after --repair: %+v, want Redis rebuilt and only the uncharged event left (Kafka replays it)", g)
	}
	if g := e.run(reconcile.Options{Lag: time.Hour, Subscriptions: []string{"diverged"}}); len(g) != 0 {
		t.Errorf("diverged within the lag: %+v", g["diverged"])
	}
	d := e.run(reconcile.Options{Lag: time.Hour})
	if len(d) != 1 {
		t.Fatalf("within the lag: drift on %d subscriptions, want only rewritten: %+v", len(d), d)
	}
	r := d["rewritten"]
	c := r.Charges
	if c == nil || !c.RatedCredits.Equal(decimal.RequireFromString("29.25")) || !c.LedgerCredits.Equal(decimal.RequireFromString("24.25")) ||
		c.RatedEvents != 6 || c.LedgerEvents != 4 || r.RedisBehind {
		t.Errorf("rewritten: %+v charges %+v; want 29.25 rated over 6 events, 24.25 charged over 4", r, c)
	}
	d = e.run(reconcile.Options{})
	if g := d["inflight"]; g.Charges == nil || g.Charges.Uncharged != 1 || !g.Charges.UnchargedCredits.Equal(decimal.RequireFromString("2.5")) {
		t.Errorf("inflight after the lag: %+v, want 1 rated event of 2.5 not charged", g.Charges)
	}
	if _, ok := d["healthy"]; ok {
		t.Errorf("healthy drifts: %+v", d["healthy"])
	}
	if err := archiveEntries("inflight", inflight); err != nil {
		t.Fatal(err)
	}
	d = e.run(reconcile.Options{Repair: true, Deep: true})
	if _, ok := d["inflight"]; ok {
		t.Errorf("inflight once archived: %+v", d["inflight"])
	}
	if g := d["rewritten"]; !g.Drifts() || g.Charges == nil || g.RedisRepaired {
		t.Errorf("rewritten after --repair: %+v; the archive is never rewritten, so it stays reported", g)
	}
}

// lose snapshots every key of sub now and returns a function that puts
// Redis back to that state (DUMP/RESTORE), as a restart from an older AOF
// would.
func (e *env) lose(sub string) func() {
	e.t.Helper()
	ctx := context.Background()
	pat := e.pfx + "{" + sub + "}*"
	keys, err := testenv.Keys(ctx, e.rc, pat) // a test keyspace of a few keys
	if err != nil {
		e.t.Fatal(err)
	}
	dumps := map[string]string{}
	for _, k := range keys {
		if dumps[k], err = e.rc.Dump(ctx, k).Result(); err != nil {
			e.t.Fatal(err)
		}
	}
	return func() {
		e.t.Helper()
		now, err := testenv.Keys(ctx, e.rc, pat)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, k := range now {
			e.rc.Del(ctx, k)
		}
		for k, d := range dumps {
			if err := e.rc.Restore(ctx, k, 0, d).Err(); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// rewriteArchived inserts r over the archived entry of its seq with a
// version that wins, as the archive writer did before entries were
// immutable.
func rewriteArchived(t *testing.T, conn driver.Conn, r archive.LedgerRow) {
	t.Helper()
	ctx := context.Background()
	b, err := conn.PrepareBatch(ctx, `INSERT INTO credit_ledger (subscription_id, seq, customer_id, kind, amount_micro, balance_after_micro,
		event_count, created_at, snapshot, version)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(r.SubscriptionID, r.Seq, r.CustomerID, r.Kind, int64(r.Amount), int64(r.BalanceAfter), r.EventCount,
		r.CreatedAt.UTC(), r.Snapshot, uint64(math.MaxUint64)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	// merged, as ReplacingMergeTree eventually does: the first copy is gone
	if err := conn.Exec(ctx, `OPTIMIZE TABLE credit_ledger FINAL`); err != nil {
		t.Fatal(err)
	}
}

// An account Redis lost entirely is rebuilt by --repair from the archive's
// last snapshot, exactly.
func TestRepairRebuildsLostAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.account("gone")
	before, err := e.store.Balance(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := testenv.Keys(ctx, e.rc, e.pfx+"{gone}*")
	if err != nil {
		t.Fatal(err)
	}
	e.rc.Del(ctx, keys...)
	if g := e.run(reconcile.Options{})["gone"]; !g.RedisMissing || fmt.Sprint(g.Kinds()) != "[redis_lost balance]" {
		t.Fatalf("lost account: %+v", g)
	}
	if g := e.run(reconcile.Options{Repair: true})["gone"]; !g.RedisRepaired || g.Drifts() {
		t.Fatalf("after --repair: %+v", g)
	}
	after, err := e.store.Balance(ctx, "gone")
	if err != nil || after.Total != before.Total || fmt.Sprint(after.Grants) != fmt.Sprint(before.Grants) {
		t.Fatalf("rebuilt %+v (%v), lost %+v", after, err, before)
	}
	if d := e.run(reconcile.Options{Deep: true}); len(d) != 0 {
		t.Fatalf("after the repair: %+v", d)
	}
}
