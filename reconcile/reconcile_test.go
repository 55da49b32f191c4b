package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/reconcile"
)

type env struct {
	t     *testing.T
	rc    redis.UniversalClient
	pfx   string
	store *balance.Store
	conn  driver.Conn
	w     *archive.Writer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := apptest.Stores(t)
	return &env{t: t, rc: st.RC, pfx: st.Prefix, store: st.Balances, conn: st.Conn, w: st.Writer}
}

// account opens sub with a grant, a top-up and three usage batches: 5 ledger
// entries, and archives them except the sequence numbers in skip.
func (e *env) account(sub string, skip ...int64) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.store.OpenAccount(ctx, balance.AccountSpec{Subscription: sub, Customer: "c-" + sub, Policy: balance.Overage,
		Currency: "USD", CreditValue: decimal.RequireFromString("0.5")}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Grant(ctx, balance.GrantRequest{Key: "included", Subscription: sub, Type: balance.Promotional, Amount: credit.Credits(100)}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.MustParse("12.5")}); err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b := balance.Batch{Subscription: sub, Topic: "usage-events", Lines: []balance.Line{{EventID: fmt.Sprintf("e%d", i), Offset: int64(i), Time: time.Now(), Credits: credit.MustParse("7.25")}}}
		res, err := e.store.Apply(ctx, []balance.Batch{b})
		if err != nil {
			e.t.Fatal(err)
		}
		e.rated(b, res[0])
	}
	e.export(sub, skip...)
}

// rated archives the rated_usage rows of an applied batch as the engine
// does (one rated line per event), before its ledger entries.
func (e *env) rated(b balance.Batch, res balance.BatchResult) {
	e.t.Helper()
	var rows []archive.RatedRow
	now := time.Now()
	for i, l := range b.Lines {
		lr := res.Lines[i]
		if lr.Status != balance.Applied {
			continue
		}
		r := archive.RatedRow{EventID: l.EventID, CustomerID: "c-" + b.Subscription, SubscriptionID: b.Subscription, Feature: "f",
			EventName: "email.sent", Quantity: decimal.NewFromInt(1), Credits: l.Credits, EventTime: l.Time, RatedAt: now,
			Status: archive.StatusApplied, Topic: b.Topic, Partition: b.Partition, Offset: l.Offset}
		for _, d := range lr.Draws {
			r.Funded += d.Amount
			r.GrantIDs, r.GrantAmounts = append(r.GrantIDs, d.Grant), append(r.GrantAmounts, d.Amount)
		}
		if lr.Overage > 0 {
			r.Unfunded, r.Status = lr.Overage, archive.StatusOverage
		}
		if lr.Unfunded > 0 {
			r.Unfunded, r.Status = r.Unfunded+lr.Unfunded, archive.StatusUnfunded
		}
		rows = append(rows, r)
	}
	if err := e.w.WriteUsage(context.Background(), rows); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) export(sub string, skip ...int64) {
	e.t.Helper()
	entries, err := e.store.Ledger(context.Background(), sub, 1, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var rows []archive.LedgerRow
next:
	for _, en := range entries {
		for _, s := range skip {
			if en.Seq == s {
				continue next
			}
		}
		rows = append(rows, accounts.LedgerRow(sub, "c-"+sub, en))
	}
	if err := e.w.WriteLedger(context.Background(), rows); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run(o reconcile.Options) map[string]reconcile.Drift {
	e.t.Helper()
	rep, err := reconcile.Run(context.Background(), e.store, e.conn, o)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]reconcile.Drift{}
	for _, d := range rep.Drift {
		out[d.Subscription] = d
	}
	return out
}

func TestHealthyHasNoDrift(t *testing.T) {
	e := newEnv(t)
	e.account("s1")
	e.account("s2")
	e.export("s1") // archived twice: collapses
	for _, deep := range []bool{false, true} {
		rep, err := reconcile.Run(context.Background(), e.store, e.conn, reconcile.Options{Deep: deep})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Checked != 2 || len(rep.Drift) != 0 {
			t.Fatalf("deep=%v: checked %d, drift %+v", deep, rep.Checked, rep.Drift)
		}
	}
}

func TestDriftReportedAndRepaired(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.account("gap", 2)    // an archived entry lost
	e.account("tail")      // then a Redis change never archived
	e.account("altered")   // then an archived row changed
	e.account("only-here") // healthy, checked through Also
	if _, err := e.store.Adjust(ctx, balance.AdjustRequest{Key: "a1", Subscription: "tail", Amount: credit.Credits(-3), Reason: "goodwill", Actor: "ops", Force: true}); err != nil {
		t.Fatal(err)
	}
	entries, err := e.store.Ledger(ctx, "altered", 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	bad := accounts.LedgerRow("altered", "c-altered", entries[0])
	bad.Amount -= credit.Credits(1)
	if err := e.w.WriteLedger(ctx, []archive.LedgerRow{bad}); !errors.Is(err, archive.ErrLedgerConflict) {
		t.Fatalf("rewriting an archived entry: %v, want ErrLedgerConflict", err)
	}
	alterArchived(t, e.conn, bad) // as a person with SQL access could

	d := e.run(reconcile.Options{})
	if len(d) != 3 {
		t.Fatalf("drift on %d subscriptions, want 3: %+v", len(d), d)
	}
	if g := d["gap"]; fmt.Sprint(g.Missing) != "[{2 2}]" || !g.Difference.Equal(decimal.RequireFromString("12.5")) {
		t.Errorf("gap: missing %v, difference %s; want [{2 2}] and the 12.5 top-up", g.Missing, g.Difference)
	}
	if g := d["tail"]; fmt.Sprint(g.Missing) != "[{6 6}]" || g.RedisLastSeq != 6 || !g.Difference.IsZero() || !g.RedisTotal.Equal(g.ArchiveTotal.Sub(decimal.NewFromInt(3))) {
		t.Errorf("tail: %+v", g)
	}
	// Within the lag an unarchived entry is in flight, not drift: at the
	// tail, or in a gap below the archive's last entry.
	lagged := e.run(reconcile.Options{Lag: time.Hour})
	if g, ok := lagged["tail"]; ok {
		t.Errorf("tail within the lag: %+v", g)
	}
	if g, ok := lagged["gap"]; ok {
		t.Errorf("gap within the lag: %+v", g)
	}
	if _, ok := lagged["altered"]; !ok {
		t.Error("an altered entry is drift whatever the lag")
	}
	if g := d["altered"]; len(g.Missing) != 0 || !g.Difference.Equal(decimal.NewFromInt(1)) {
		t.Errorf("altered (shallow): %+v", g)
	}
	deep := e.run(reconcile.Options{Deep: true, Subscriptions: []string{"altered"}})
	if g := deep["altered"]; fmt.Sprint(g.Mismatched) != "[4]" {
		t.Errorf("altered (deep): mismatched %v, want [4]", g.Mismatched)
	}

	// Redis lost an account the archive knows.
	rep, err := reconcile.Run(ctx, e.store, e.conn, reconcile.Options{Subscriptions: []string{"ghost"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Drift) != 0 {
		t.Fatalf("ghost without any ledger: %+v", rep.Drift)
	}
	ghost := accounts.LedgerRow("ghost", "c", balance.Entry{Seq: 1, Kind: "grant", Amount: credit.Credits(5), Balance: credit.Credits(5), Time: time.Now()})
	if err := e.w.WriteLedger(ctx, []archive.LedgerRow{ghost}); err != nil {
		t.Fatal(err)
	}
	if g := e.run(reconcile.Options{})["ghost"]; !g.RedisMissing {
		t.Errorf("ghost: %+v, want RedisMissing", g)
	}

	fixed := e.run(reconcile.Options{Repair: true, Deep: true, Subscriptions: []string{"gap", "tail", "altered"}})
	for _, s := range []string{"gap", "tail"} {
		g := fixed[s]
		if g.Repaired != 1 || !g.Difference.IsZero() || len(g.Missing)+len(g.Mismatched)+len(g.Extra) != 0 {
			t.Errorf("%s after repair: %+v", s, g)
		}
	}
	// The archive is never rewritten from Redis: the altered entry stays
	// reported.
	if g := fixed["altered"]; g.Repaired != 0 || fmt.Sprint(g.Mismatched) != "[4]" {
		t.Errorf("altered after repair: %+v", g)
	}
	if d := e.run(reconcile.Options{Deep: true, Subscriptions: []string{"gap", "tail", "only-here"}}); len(d) != 0 {
		t.Errorf("drift after repair: %+v", d)
	}
}

// alterArchived overwrites an archived ledger row behind the writer's back.
func alterArchived(t *testing.T, conn driver.Conn, r archive.LedgerRow) {
	t.Helper()
	ctx := context.Background()
	b, err := conn.PrepareBatch(ctx, `INSERT INTO credit_ledger (subscription_id, seq, customer_id, kind, amount_micro, balance_after_micro, created_at, version)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(r.SubscriptionID, r.Seq, r.CustomerID, r.Kind, int64(r.Amount), int64(r.BalanceAfter), r.CreatedAt.UTC(), uint64(math.MaxUint64)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}
