package archive_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/reconcile"
)

// Cluster mode on two private clickhouse-servers as two shards: migrate
// creates local tables and Distributed tables on every host and records
// schema_migrations on each; the normal writer and queries work through
// the Distributed tables; all rows of a subscription land on one shard, so
// FINAL removes duplicates; a second migrate changes nothing.
func TestClusterModeTwoShards(t *testing.T) {
	procs := testenv.StartClickHouseCluster(t, "cm", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cc := archive.ConnConfig{Addr: procs[0].Addr, Database: "cl_" + testenv.RandomID(t), User: "default", Cluster: "cm"}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("migrate in cluster mode: %v", err)
	}
	// A host that lost everything (or joined later) is brought up to date
	// by the next run; the others are left as they are.
	lost, err := archive.Open(ctx, archive.ConnConfig{Addr: procs[1].Addr, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if err := lost.Exec(ctx, "DROP DATABASE "+cc.Database); err != nil {
		t.Fatal(err)
	}
	lost.Close()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("migrate again in cluster mode: %v", err)
	}
	shard := make([]archive.ConnConfig, len(procs)) // each host alone, no cluster
	for i, p := range procs {
		shard[i] = archive.ConnConfig{Addr: p.Addr, Database: cc.Database, User: "default"}
		conn, err := archive.Open(ctx, shard[i])
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations FINAL").Scan(&n); err != nil || n != uint64(len(archive.Migrations)) {
			t.Fatalf("host %s: schema_migrations has %d rows (%v), want %d", p.Addr, n, err, len(archive.Migrations))
		}
		var engine string
		if err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'rated_usage'").Scan(&engine); err != nil || engine != "Distributed" {
			t.Fatalf("host %s: rated_usage engine %q (%v), want Distributed", p.Addr, engine, err)
		}
		conn.Close()
	}

	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	const subs, perSub = 8, 50
	want := map[string]credit.Amount{}
	for s := 0; s < subs; s++ {
		sub := fmt.Sprintf("sub-%d", s)
		rows := usageRows(sub, perSub, at)
		for i := 0; i < 2; i++ { // the second time is a redelivery
			if err := w.WriteUsage(ctx, rows); err != nil {
				t.Fatalf("write usage through the Distributed table: %v", err)
			}
		}
		for _, r := range rows {
			want[sub] += r.Credits
		}
		ledger := []archive.LedgerRow{
			{SubscriptionID: sub, Seq: 1, CustomerID: "cust-1", Kind: archive.KindTopUp, Amount: credit.Credits(1000), BalanceAfter: credit.Credits(1000),
				CreditCurrency: "AIT", CreatedAt: at.Add(-time.Hour), Snapshot: `{"a":{}}`},
			{SubscriptionID: sub, Seq: 2, CustomerID: "cust-1", Kind: archive.KindUsage, Amount: -want[sub],
				BalanceAfter: credit.Credits(1000) - want[sub], CreditCurrency: "AIT", EventCount: perSub, CreatedAt: at},
		}
		for i := 0; i < 2; i++ {
			if err := w.WriteLedger(ctx, ledger); err != nil {
				t.Fatalf("write ledger through the Distributed table (run %d): %v", i+1, err)
			}
		}
	}

	// Every subscription on exactly one shard, and both shards used.
	where := map[string]int{}
	for i, sc := range shard {
		c, err := archive.Open(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, "SELECT DISTINCT subscription_id FROM rated_usage_local")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var sub string
			if err := rows.Scan(&sub); err != nil {
				t.Fatal(err)
			}
			if j, ok := where[sub]; ok {
				t.Fatalf("%s has rows on shards %d and %d", sub, j, i)
			}
			where[sub] = i
			n++
		}
		rows.Close()
		c.Close()
		if n == 0 {
			t.Fatalf("shard %d holds no subscription: rows are not spread", i)
		}
	}
	if len(where) != subs {
		t.Fatalf("%d subscriptions on the shards, want %d", len(where), subs)
	}

	for s := 0; s < subs; s++ {
		sub := fmt.Sprintf("sub-%d", s)
		for _, q := range []archive.UsageQuery{
			{Subscription: sub, From: at.Add(-time.Hour), To: at.Add(time.Hour), GroupBy: archive.GroupByFeature},
			{Subscription: sub, From: at.Truncate(24 * time.Hour), To: at.Truncate(24 * time.Hour).Add(24 * time.Hour), GroupBy: archive.GroupByDay},
		} {
			got, err := archive.Usage(ctx, conn, q)
			if err != nil {
				t.Fatalf("usage of %s by %s: %v", sub, q.GroupBy, err)
			}
			if len(got) != 1 || got[0].Events != perSub || !got[0].Credits.Equal(want[sub].Decimal()) {
				t.Fatalf("usage of %s by %s: %+v, want %d events of %s credits", sub, q.GroupBy, got, perSub, want[sub])
			}
		}
		inv, err := archive.BuildInvoice(ctx, conn, sub, "2026-11", archive.InvoiceTerms{CustomerID: "cust-1", Currency: "USD",
			CreditValue: decimal.RequireFromString("0.04"), CreditCurrency: "AIT"})
		if err != nil {
			t.Fatalf("invoice of %s: %v", sub, err)
		}
		if !inv.UsageCredits.Equal(want[sub].Decimal()) || !inv.ClosingBalance.Equal((credit.Credits(1000) - want[sub]).Decimal()) {
			t.Fatalf("invoice of %s: usage %s closing %s, want %s and %s", sub, inv.UsageCredits, inv.ClosingBalance, want[sub], credit.Credits(1000)-want[sub])
		}
		es, err := archive.LedgerEntries(ctx, conn, sub, 1)
		if err != nil || len(es) != 2 || es[0].Snapshot != `{"a":{}}` {
			t.Fatalf("ledger of %s: %+v, %v", sub, es, err)
		}
	}
	heads, err := archive.LedgerHeads(ctx, conn)
	if err != nil || len(heads) != subs || heads["sub-3"].Seq != 2 {
		t.Fatalf("ledger heads %+v, %v", heads, err)
	}
	st, err := reconcile.ArchiveState(ctx, conn, "sub-6")
	if err != nil || st.LastSeq != 2 || !st.Balance.Equal((credit.Credits(1000) - want["sub-6"]).Decimal()) || st.Watermarks["usage-events/1"] != perSub-1 {
		t.Fatalf("archive state of sub-6: %+v, %v", st, err)
	}
	// Immutability holds through the Distributed table.
	err = w.WriteLedger(ctx, []archive.LedgerRow{{SubscriptionID: "sub-5", Seq: 2, CustomerID: "cust-1", Kind: archive.KindUsage,
		Amount: credit.Credits(-1), BalanceAfter: credit.Credits(999), CreatedAt: at}})
	if !errors.Is(err, archive.ErrLedgerConflict) {
		t.Fatalf("another entry at sub-5 seq 2: %v, want a conflict", err)
	}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("migrate after writes: %v", err)
	}

	// A cluster the server does not know, and a database of the
	// non-cluster schema, are refused naming the setting.
	named := func(c archive.ConnConfig, want string) {
		t.Helper()
		err := archive.Migrate(ctx, c)
		var se *config.SettingError
		if !errors.As(err, &se) || se.Flag != "clickhouse-cluster" || !strings.Contains(err.Error(), want) || !errors.Is(err, archive.ErrBadCluster) {
			t.Fatalf("migrate %+v: %v, want an error on --clickhouse-cluster saying %q", c, err, want)
		}
	}
	unknown := cc
	unknown.Cluster = "nope"
	named(unknown, `no cluster "nope"`)
	plain := shard[1]
	plain.Database = "plain_" + testenv.RandomID(t)
	if err := archive.Migrate(ctx, plain); err != nil {
		t.Fatal(err)
	}
	plain.Cluster = "cm"
	plain.Addr = procs[0].Addr
	named(plain, "as a local table")
	first, err := archive.Open(ctx, archive.ConnConfig{Addr: procs[0].Addr, Database: plain.Database, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var n uint64
	if err := first.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase()").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the refused migrate created %d tables (%v) on the first host: every host is checked before any changes", n, err)
	}
}

// The analysts' queries of README.md (and those of the Decimal schema) give
// the same answers through the Distributed tables of a two-shard cluster.
func TestReadmeQueriesOnCluster(t *testing.T) {
	procs := testenv.StartClickHouseCluster(t, "cm", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc := archive.ConnConfig{Addr: procs[1].Addr, Database: "cl_" + testenv.RandomID(t), User: "default", Cluster: "cm"}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	conn, err := archive.Open(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkReadmeQueries(t, conn, archive.NewWriter(conn))
	// and the Decimal names, ALIAS columns of the Distributed tables too
	b, err := os.ReadFile("testdata/legacy_queries.sql")
	if err != nil {
		t.Fatal(err)
	}
	checkQueries(t, conn, sqlByName(string(b)), legacyWant)
}

// Cluster mode with ZooKeeper: a private ZooKeeper and three private
// clickhouse-servers, shard 1 with two replicas and shard 2 with one.
// Migrate makes the schema ON CLUSTER with replicated local tables and a
// schema_migrations every host agrees on; the writer and the queries work
// through the Distributed tables; a replica holds the rows of its peer.
func TestClusterModeReplicated(t *testing.T) {
	zk := testenv.StartZooKeeper(t)
	procs := testenv.StartClickHouseReplicatedCluster(t, "rc", zk, 2, 1)
	hosts := []*testenv.ClickHouseProcess{procs[0][0], procs[0][1], procs[1][0]}
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	cc := archive.ConnConfig{Addr: procs[0][1].Addr, Database: "rc_" + testenv.RandomID(t), User: "default", Cluster: "rc"}
	for run := 1; run <= 2; run++ { // the second run changes nothing
		if err := archive.Migrate(ctx, cc); err != nil {
			t.Fatalf("migrate %d in cluster mode with ZooKeeper: %v", run, err)
		}
	}
	open := func(p *testenv.ClickHouseProcess) driver.Conn {
		t.Helper()
		c, err := archive.Open(ctx, archive.ConnConfig{Addr: p.Addr, Database: cc.Database, User: "default"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// dump is a query's rows as text, to compare hosts.
	dump := func(c driver.Conn, q string) string {
		t.Helper()
		rows, err := c.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			b.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	hc := make([]driver.Conn, len(hosts))
	var migrations string
	for i, p := range hosts {
		hc[i] = open(p)
		got := dump(hc[i], "SELECT concat(toString(version), ' ', name, ' ', toString(applied_at)) FROM schema_migrations FINAL ORDER BY version")
		if n := strings.Count(got, "\n"); n != len(archive.Migrations) {
			t.Fatalf("host %s: schema_migrations has %d rows, want %d:\n%s", p.Addr, n, len(archive.Migrations), got)
		}
		if i == 0 {
			migrations = got
		} else if got != migrations {
			t.Fatalf("host %s: schema_migrations\n%s\ndiffers from the first host's\n%s", p.Addr, got, migrations)
		}
		for table, want := range map[string]string{"schema_migrations": "ReplicatedReplacingMergeTree", "rated_usage_local": "ReplicatedReplacingMergeTree",
			"usage_daily_dirty_local": "ReplicatedSummingMergeTree", "rated_usage": "Distributed", "credit_ledger": "Distributed"} {
			var engine string
			if err := hc[i].QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&engine); err != nil || engine != want {
				t.Fatalf("host %s: %s engine %q (%v), want %s", p.Addr, table, engine, err, want)
			}
		}
	}

	// Written and read through shard 2's host: shard 1's replicas are both
	// remote, so reads must go where the writes went.
	via := cc
	via.Addr = procs[1][0].Addr
	conn, err := archive.Open(ctx, via)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	const subs, perSub = 8, 20
	want := map[string]credit.Amount{}
	for s := 0; s < subs; s++ {
		sub := fmt.Sprintf("sub-%d", s)
		rows := usageRows(sub, perSub, at)
		for i := 0; i < 2; i++ { // the second time is a redelivery
			if err := w.WriteUsage(ctx, rows); err != nil {
				t.Fatalf("write usage through the Distributed table: %v", err)
			}
		}
		for _, r := range rows {
			want[sub] += r.Credits
		}
		ledger := []archive.LedgerRow{
			{SubscriptionID: sub, Seq: 1, CustomerID: "cust-1", Kind: archive.KindTopUp, Amount: credit.Credits(1000), BalanceAfter: credit.Credits(1000),
				CreditCurrency: "AIT", CreatedAt: at.Add(-time.Hour), Snapshot: `{"a":{}}`},
			{SubscriptionID: sub, Seq: 2, CustomerID: "cust-1", Kind: archive.KindUsage, Amount: -want[sub],
				BalanceAfter: credit.Credits(1000) - want[sub], CreditCurrency: "AIT", EventCount: perSub, CreatedAt: at},
		}
		if err := w.WriteLedger(ctx, ledger); err != nil {
			t.Fatalf("write ledger through the Distributed table: %v", err)
		}
	}

	for s := 0; s < subs; s++ {
		sub := fmt.Sprintf("sub-%d", s)
		got, err := archive.Usage(ctx, conn, archive.UsageQuery{Subscription: sub, From: at.Add(-time.Hour), To: at.Add(time.Hour), GroupBy: archive.GroupByFeature})
		if err != nil || len(got) != 1 || got[0].Events != perSub || !got[0].Credits.Equal(want[sub].Decimal()) {
			t.Fatalf("usage of %s: %+v (%v), want %d events of %s credits", sub, got, err, perSub, want[sub])
		}
		inv, err := archive.BuildInvoice(ctx, conn, sub, "2026-11", archive.InvoiceTerms{CustomerID: "cust-1", Currency: "USD",
			CreditValue: decimal.RequireFromString("0.04"), CreditCurrency: "AIT"})
		if err != nil || !inv.UsageCredits.Equal(want[sub].Decimal()) || !inv.ClosingBalance.Equal((credit.Credits(1000) - want[sub]).Decimal()) {
			t.Fatalf("invoice of %s: %+v (%v), want usage %s", sub, inv, err, want[sub])
		}
		es, err := archive.LedgerEntries(ctx, conn, sub, 1)
		if err != nil || len(es) != 2 || es[0].Snapshot != `{"a":{}}` {
			t.Fatalf("ledger of %s: %+v, %v", sub, es, err)
		}
	}

	// The second replica of shard 1 holds what the first does; both shards
	// hold some subscriptions, each on one shard only.
	for _, table := range []string{"rated_usage_local", "credit_ledger_local", "usage_daily_local", "usage_daily_dirty_local"} {
		if err := hc[1].Exec(ctx, "SYSTEM SYNC REPLICA "+table); err != nil {
			t.Fatal(err)
		}
	}
	for q, min := range map[string]int{
		"SELECT concat(subscription_id, ' ', event_id, ' ', toString(line), ' ', toString(credits_micro)) FROM rated_usage_local FINAL ORDER BY subscription_id, event_id, line": 1,
		"SELECT concat(subscription_id, ' ', toString(seq), ' ', toString(amount_micro), ' ', snapshot) FROM credit_ledger_local FINAL ORDER BY subscription_id, seq":            1,
		"SELECT concat(subscription_id, ' ', toString(day), ' ', toString(rows)) FROM usage_daily_dirty_local FINAL ORDER BY subscription_id, day":                               1,
	} {
		r1, r2 := dump(hc[0], q), dump(hc[1], q)
		if r1 != r2 || strings.Count(r1, "\n") < min {
			t.Fatalf("%s\nreplica r1 of shard 1:\n%s\nreplica r2:\n%s", q, r1, r2)
		}
	}
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatalf("migrate after writes: %v", err)
	}
	if got := dump(hc[2], "SELECT concat(toString(version), ' ', name, ' ', toString(applied_at)) FROM schema_migrations FINAL ORDER BY version"); got != migrations {
		t.Fatalf("schema_migrations after a third run:\n%s\nwant\n%s", got, migrations)
	}
	// A profile that may read a lagging replica is refused, naming the
	// setting, before any host changes.
	random := cc
	random.User, random.Database = "random", "rr_"+testenv.RandomID(t)
	err = archive.Migrate(ctx, random)
	var se *config.SettingError
	if !errors.As(err, &se) || se.Flag != "clickhouse-cluster" || !errors.Is(err, archive.ErrBadCluster) || !strings.Contains(err.Error(), "load_balancing random") {
		t.Fatalf("migrate as a user whose profile has load_balancing random: %v, want it refused naming load_balancing", err)
	}
	for i := range hosts {
		var n uint64
		if err := hc[i].QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", random.Database).Scan(&n); err != nil || n != 0 {
			t.Fatalf("host %s: the refused migrate created database %s (%d, %v)", hosts[i].Addr, random.Database, n, err)
		}
	}

	// A database migrated host by host (by an earlier release, or before
	// the servers had ZooKeeper) stays host by host: it still migrates, and
	// is never mixed with replicated tables.
	old := cc
	old.Database = "old_" + testenv.RandomID(t)
	if err := hc[2].Exec(ctx, "CREATE DATABASE "+old.Database); err != nil {
		t.Fatal(err)
	}
	if err := hc[2].Exec(ctx, "CREATE TABLE "+old.Database+".schema_migrations (version UInt32, name String, applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree ORDER BY version"); err != nil {
		t.Fatal(err)
	}
	if err := archive.Migrate(ctx, old); err != nil {
		t.Fatalf("migrate a database migrated host by host: %v", err)
	}
	for i := range hosts {
		var engine string
		if err := hc[i].QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'rated_usage_local'", old.Database).Scan(&engine); err != nil || strings.HasPrefix(engine, "Replicated") {
			t.Fatalf("host %s: rated_usage_local of a host-by-host database is %q (%v), want it left unreplicated", hosts[i].Addr, engine, err)
		}
	}

	subsOf := func(c driver.Conn) map[string]bool {
		out := map[string]bool{}
		for _, s := range strings.Fields(dump(c, "SELECT DISTINCT subscription_id FROM rated_usage_local")) {
			out[s] = true
		}
		return out
	}
	s1, s2 := subsOf(hc[0]), subsOf(hc[2])
	if len(s1) == 0 || len(s2) == 0 || len(s1)+len(s2) != subs {
		t.Fatalf("shard 1 holds %v, shard 2 %v: want %d subscriptions spread over both, each on one", s1, s2, subs)
	}
	for s := range s1 {
		if s2[s] {
			t.Fatalf("%s is on both shards", s)
		}
	}
}
