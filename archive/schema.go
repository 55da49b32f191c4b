package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/creditmeter/creditmeter/internal/config"
)

// Migration is one schema change, applied once, in order. Statements must be
// idempotent (IF NOT EXISTS) so a crash between the change and its record is
// harmless.
type Migration struct {
	Version int
	Name    string
	SQL     string
	// AddsColumn is "table.column" when SQL adds that column: 18.16 has no
	// ADD COLUMN IF NOT EXISTS, so a column already there skips SQL.
	AddsColumn string
	// Then are more statements, run after SQL (an ALTER names one table).
	Then []string
	// Materialize writes DEFAULT columns into the parts written before the
	// columns existed (see materialize).
	Materialize []Materialize
	// Distributed: in cluster mode the statements also run on the
	// Distributed tables (ALTERs of columns), after the local ones.
	Distributed bool
}

// Materialize names a column that parts written before it was added hold
// no data for (they compute its DEFAULT on read), and the UPDATE that
// writes it into them.
type Materialize struct {
	Table, Column, Update string
}

// Migrations is the archive schema. It runs on ClickHouse 18.16 and current
// releases alike: no LowCardinality, DateTime64, Map, JSON, TTL or CODEC.
//
// Duplicates are removed by design: both tables are ReplacingMergeTree keyed
// by the natural key of a row (an event's rated line; a ledger entry's
// subscription and sequence), so a row archived twice (redelivery after a
// crash) collapses to one. Query with FINAL, or argMax(col, version) grouped
// by the key, to see each row once before merges have run.
var Migrations = []Migration{
	{Version: 1, Name: "rated_usage", SQL: `CREATE TABLE IF NOT EXISTS rated_usage (
		event_id String,
		line UInt16,
		customer_id String,
		subscription_id String,
		feature String,
		event_name String,
		quantity Decimal(38, 9),
		credits Decimal(38, 9),
		funded_credits Decimal(38, 9),
		unfunded_credits Decimal(38, 9),
		credit_currency String,
		money_value Decimal(38, 9),
		money_currency String,
		event_time DateTime('UTC'),
		event_time_ms UInt16,
		rated_at DateTime('UTC'),
		grant_ids Array(String),
		grant_amounts Array(Decimal(38, 9)),
		status Enum8('applied' = 1, 'unfunded' = 2, 'overage' = 3),
		source_topic String,
		source_partition Int32,
		source_offset Int64,
		version UInt64
	) ENGINE = ReplacingMergeTree(version)
	PARTITION BY toYYYYMM(event_time)
	ORDER BY (subscription_id, event_id, line)`},
	{Version: 2, Name: "credit_ledger", SQL: `CREATE TABLE IF NOT EXISTS credit_ledger (
		subscription_id String,
		seq UInt64,
		customer_id String,
		kind Enum8('grant' = 1, 'topup' = 2, 'adjustment' = 3, 'usage' = 4, 'expiry' = 5),
		amount Decimal(38, 9),
		balance_after Decimal(38, 9),
		credit_currency String,
		grant_id String,
		grant_type String,
		money_amount Decimal(38, 9),
		money_currency String,
		event_count UInt64,
		reason String,
		actor String,
		idempotency_key String,
		created_at DateTime('UTC'),
		version UInt64
	) ENGINE = ReplacingMergeTree(version)
	PARTITION BY toYYYYMM(created_at)
	ORDER BY (subscription_id, seq)`},
	// The daily rollup (see rollup.go): usage_daily holds per (subscription,
	// day, feature) sums recomputed from rated_usage FINAL; the view counts
	// the raw rows inserted per (subscription, day) into usage_daily_dirty,
	// and usage_daily_done records the count each day was last computed
	// from, so a day whose count moved is recomputed.
	{Version: 3, Name: "usage_daily", SQL: `CREATE TABLE IF NOT EXISTS usage_daily (
		subscription_id String,
		day Date,
		feature String,
		customer_id String,
		quantity Decimal(38, 9),
		credits Decimal(38, 9),
		funded_credits Decimal(38, 9),
		unfunded_credits Decimal(38, 9),
		money_value Decimal(38, 9),
		credit_currency String,
		money_currency String,
		events UInt64,
		version UInt64
	) ENGINE = ReplacingMergeTree(version)
	PARTITION BY toYYYYMM(day)
	ORDER BY (subscription_id, day, feature)`},
	{Version: 4, Name: "usage_daily_done", SQL: `CREATE TABLE IF NOT EXISTS usage_daily_done (
		subscription_id String,
		day Date,
		rows UInt64,
		version UInt64
	) ENGINE = ReplacingMergeTree(version)
	PARTITION BY toYYYYMM(day)
	ORDER BY (subscription_id, day)`},
	{Version: 5, Name: "usage_daily_dirty", SQL: `CREATE TABLE IF NOT EXISTS usage_daily_dirty (
		subscription_id String,
		day Date,
		rows UInt64
	) ENGINE = SummingMergeTree(rows)
	PARTITION BY toYYYYMM(day)
	ORDER BY (subscription_id, day)`},
	{Version: 6, Name: "usage_daily_dirty_mv", SQL: `CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_dirty_mv TO usage_daily_dirty AS
	SELECT subscription_id, toDate(event_time) AS day, count() AS rows
	FROM rated_usage GROUP BY subscription_id, day`},
	// Rows archived before the view existed. Counted twice if inserted
	// between 6 and 7: harmless, a count only has to move to be noticed.
	{Version: 7, Name: "usage_daily_dirty_backfill", SQL: `INSERT INTO usage_daily_dirty (subscription_id, day, rows)
	SELECT subscription_id, toDate(event_time) AS day, count() FROM rated_usage GROUP BY subscription_id, day`},
	// The balance account's state after an entry (see balance.Entry.Snapshot),
	// from which a subscription whose Redis lost writes is rebuilt. Rows
	// from this version on have a version that decreases with time, so the
	// first archived copy of an entry wins (entries are immutable).
	{Version: 8, Name: "credit_ledger_snapshot", SQL: `ALTER TABLE credit_ledger ADD COLUMN snapshot String`, AddsColumn: "credit_ledger.snapshot"},
	// 9-13: credits and money as Int64 (see int64.go and README.md "Units").
	{Version: 9, Name: "rated_usage_int64", SQL: addIntColumns(ratedUsageInts), AddsColumn: "rated_usage." + ratedUsageInts.cols[0].name},
	{Version: 10, Name: "credit_ledger_int64", SQL: addIntColumns(creditLedgerInts), AddsColumn: "credit_ledger." + creditLedgerInts.cols[0].name},
	{Version: 11, Name: "usage_daily_int64", SQL: addIntColumns(usageDailyInts), AddsColumn: "usage_daily." + usageDailyInts.cols[0].name},
	{Version: 12, Name: "int64_materialize", Materialize: []Materialize{
		materializeInts(ratedUsageInts), materializeInts(creditLedgerInts), materializeInts(usageDailyInts)}},
	{Version: 13, Name: "int64_switch", SQL: switchToInts(ratedUsageInts),
		Then: []string{switchToInts(creditLedgerInts), switchToInts(usageDailyInts)}, Distributed: true},
	// An event's dimensions, as parallel arrays (18.16 has no Map): the
	// value of key k is dim_values[indexOf(dim_keys, k)], '' when absent.
	// Rows archived before have none.
	{Version: 15, Name: "rated_usage_dimensions", SQL: `ALTER TABLE rated_usage ADD COLUMN dim_keys Array(String), ADD COLUMN dim_values Array(String)`,
		AddsColumn: "rated_usage.dim_keys"},
	// 26-27: rated_usage.quantity as Int64 (see quantity.go).
	{Version: 26, Name: "rated_usage_quantity_int64", SQL: addQuantityColumns(), AddsColumn: "rated_usage.quantity_mant"},
	{Version: 27, Name: "quantity_switch", Materialize: []Materialize{materializeQuantity()}, SQL: switchQuantity(), Distributed: true},
	// A UNIQUE_COUNT line that counted its value (the first in its billing
	// period): the value and the period [start, end) in Unix ms, so a
	// repair can rebuild the balance's UNIQUE_COUNT sets. Periods 0 on other
	// rows, repeats and rows archived before ('' may be a value counted).
	{Version: 28, Name: "rated_usage_unique", SQL: `ALTER TABLE rated_usage ADD COLUMN unique_value String, ADD COLUMN unique_period_ms Int64,
		ADD COLUMN unique_period_end_ms Int64`, AddsColumn: "rated_usage.unique_value"},
}

// Migrate creates the database if missing and applies every migration not yet
// recorded in schema_migrations. With c.Cluster it does so on every host of
// the cluster (see clusterSteps).
func Migrate(ctx context.Context, c ConnConfig) error {
	if c.Cluster != "" {
		return migrateCluster(ctx, c, Migrations)
	}
	if err := EnsureDatabase(ctx, c); err != nil {
		return err
	}
	conn, err := Open(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	return migrate(ctx, conn, nil)
}

// ErrBadCluster is a --clickhouse-cluster the servers cannot serve as
// configured: retrying does not help.
var ErrBadCluster = errors.New("bad ClickHouse cluster setting")

// ClusterHosts is the host:port of every replica of every shard of
// c.Cluster, as the server at c.Addr knows it (system.clusters).
func ClusterHosts(ctx context.Context, c ConnConfig) ([]string, error) {
	hosts, err := clusterTopology(ctx, c)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.addr
	}
	return out, nil
}

// migrateCluster runs the migrations on each host of the cluster, one host
// after the other, each recording them in its own schema_migrations: a host
// that missed a run (down, added later) is brought up to date by the next.
// No ON CLUSTER, so no ZooKeeper is needed (see README.md). Every host is
// checked before any is changed. Servers with ZooKeeper get replicated
// tables made ON CLUSTER instead (migrateReplicated).
func migrateCluster(ctx context.Context, c ConnConfig, ms []Migration) error {
	topo, err := clusterTopology(ctx, c)
	if err != nil {
		return err
	}
	first := c
	first.Database = ""
	fc, err := Open(ctx, first)
	if err != nil {
		return err
	}
	zk, err := hasZooKeeper(ctx, fc)
	fc.Close()
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	if zk {
		byHost, err := migratedHostByHost(ctx, c, topo)
		if err != nil {
			return err
		}
		if !byHost {
			return migrateReplicated(ctx, c, topo, ms)
		}
		// migrated host by host before (an earlier release, or before the
		// servers had ZooKeeper): it stays so, never mixed with replicated tables
	}
	hosts := make([]string, len(topo))
	for i, h := range topo {
		hosts[i] = h.addr
	}
	conns := make([]driver.Conn, 0, len(hosts))
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	dbs := make([]string, len(hosts))
	for i, h := range hosts {
		hc := c
		hc.Addr = h
		if err := EnsureDatabase(ctx, hc); err != nil {
			return fmt.Errorf("cluster %s: %w", c.Cluster, err)
		}
		conn, err := Open(ctx, hc)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", c.Cluster, err)
		}
		conns = append(conns, conn)
		if dbs[i], err = checkClusterHost(ctx, conn); err != nil {
			return fmt.Errorf("cluster %s, host %s: %w", c.Cluster, h, err)
		}
	}
	for i, conn := range conns {
		if err := migrateList(ctx, conn, ms, func(m Migration) []step { return clusterSteps(m, c.Cluster, dbs[i]) }); err != nil {
			return fmt.Errorf("cluster %s, host %s: %w", c.Cluster, hosts[i], err)
		}
	}
	return nil
}

// migratedHostByHost says whether any host of the cluster holds the
// database with a schema_migrations that is not replicated.
func migratedHostByHost(ctx context.Context, c ConnConfig, topo []clusterHost) (bool, error) {
	for _, h := range topo {
		hc := c
		hc.Addr, hc.Database = h.addr, ""
		conn, err := Open(ctx, hc)
		if err != nil {
			return false, fmt.Errorf("cluster %s: %w", c.Cluster, err)
		}
		var n uint64
		err = conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations' AND engine NOT LIKE 'Replicated%'", c.Database).Scan(&n)
		conn.Close()
		if err != nil {
			return false, fmt.Errorf("cluster %s, host %s: %w", c.Cluster, h.addr, err)
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// checkClusterHost returns the host's database, refusing one that holds a
// table of the non-cluster schema: CREATE … IF NOT EXISTS of its
// Distributed table would silently do nothing.
func checkClusterHost(ctx context.Context, conn driver.Conn) (string, error) {
	var db, name string
	if err := conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&db); err != nil {
		return "", err
	}
	err := conn.QueryRow(ctx, `SELECT name FROM system.tables WHERE database = ? AND name IN ('rated_usage', 'credit_ledger', 'usage_daily',
		'usage_daily_done', 'usage_daily_dirty') AND engine != 'Distributed' LIMIT 1`, db).Scan(&name)
	switch {
	case err == nil:
		return "", &config.SettingError{Flag: "clickhouse-cluster", Err: fmt.Errorf(
			"%w: database %s already holds %s as a local table (created without --clickhouse-cluster): cluster mode needs a database of its own", ErrBadCluster, db, name)}
	case !errors.Is(err, sql.ErrNoRows):
		return "", err
	}
	return db, nil
}

// archiveTables are the tables that become <name>_local on each shard
// behind a Distributed <name>.
var archiveTables = regexp.MustCompile(`\b(rated_usage|credit_ledger|usage_daily|usage_daily_done|usage_daily_dirty)\b`)

var createTable = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS (\w+) `)

// clusterSteps is m in cluster mode: every table is a local table
// <name>_local on each shard, the materialized view and the backfill work
// on the local tables, and <name> is a Distributed table over the local
// ones, sharded by cityHash64(subscription_id). All rows of a subscription
// thus live on one shard, so ReplacingMergeTree's dedupe (per shard) and
// FINAL see every copy of a key, and a query through <name> reads every
// shard. Queries and the writer use <name> unchanged.
func clusterSteps(m Migration, cluster, db string) []step {
	var steps []step
	for _, mat := range m.Materialize { // the data is in the local tables
		mat.Table += "_local"
		mat.Update = archiveTables.ReplaceAllString(mat.Update, "${1}_local")
		steps = append(steps, step{mat: &mat})
	}
	for i, sql := range m.statements() {
		local := archiveTables.ReplaceAllString(sql, "${1}_local")
		if table, column, ok := strings.Cut(m.AddsColumn, "."); ok && i == 0 {
			steps = append(steps, step{sql: local, table: table + "_local", column: column}, step{sql: sql, table: table, column: column})
			continue
		}
		steps = append(steps, step{sql: local})
		if m.Distributed {
			steps = append(steps, step{sql: sql})
		}
		if t := createTable.FindStringSubmatch(sql); t != nil {
			steps = append(steps, step{sql: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s AS %[1]s_local ENGINE = Distributed(%s, %s, %s, cityHash64(subscription_id))",
				t[1], quote(cluster), quote(db), quote(t[1]+"_local"))})
		}
	}
	return steps
}

// statements are m's SQL statements in order.
func (m Migration) statements() []string {
	var out []string
	if m.SQL != "" {
		out = append(out, m.SQL)
	}
	return append(out, m.Then...)
}

// step is one statement of a migration, skipped when column is set and
// table already has it; or, with mat, a column to materialize.
type step struct {
	sql, table, column string
	mat                *Materialize
	perShard, perHost  bool // with ZooKeeper: on each shard / host, not ON CLUSTER
}

func singleStep(m Migration) []step {
	var steps []step
	for i := range m.Materialize {
		steps = append(steps, step{mat: &m.Materialize[i]})
	}
	for i, sql := range m.statements() {
		st := step{sql: sql}
		if i == 0 {
			st.table, st.column, _ = strings.Cut(m.AddsColumn, ".")
		}
		steps = append(steps, st)
	}
	return steps
}

// materialize runs mat.Update (a mutation) while an active part of
// mat.Table lacks mat.Column, and waits for it: 18.16 has no synchronous
// mutations. Parts written after the column was added have it already.
func materialize(ctx context.Context, conn driver.Conn, mat Materialize) error {
	lacking := func() (uint64, error) {
		var n uint64
		err := conn.QueryRow(ctx, `SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = ? AND active
			AND name NOT IN (SELECT name FROM system.parts_columns WHERE database = currentDatabase() AND table = ? AND active AND column = ?)`,
			mat.Table, mat.Table, mat.Column).Scan(&n)
		return n, err
	}
	pending := func() (uint64, error) {
		var n uint64
		err := conn.QueryRow(ctx, `SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = ? AND is_done = 0`,
			mat.Table).Scan(&n)
		return n, err
	}
	// A run cut short (serve's first try has a timeout) leaves its mutation
	// running: the next run waits for it rather than queue another.
	for attempt := 0; ; attempt++ {
		for {
			p, err := pending()
			if err != nil {
				return err
			}
			if p == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for the mutation of %s: %w", mat.Table, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		n, err := lacking()
		if err != nil || n == 0 {
			return err
		}
		if attempt == 3 {
			return fmt.Errorf("%d parts of %s still lack %s after %d mutations", n, mat.Table, mat.Column, attempt)
		}
		if err := conn.Exec(ctx, mat.Update); err != nil {
			return err
		}
	}
}

func migrate(ctx context.Context, conn driver.Conn, steps func(Migration) []step) error {
	return migrateList(ctx, conn, Migrations, steps)
}

func migrateList(ctx context.Context, conn driver.Conn, ms []Migration, steps func(Migration) []step) error {
	if steps == nil {
		steps = singleStep
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime('UTC')
	) ENGINE = ReplacingMergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("archive: create schema_migrations: %w", err)
	}
	done := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations FINAL")
	if err != nil {
		return fmt.Errorf("archive: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("archive: read schema_migrations: %w", err)
		}
		done[int(v)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("archive: read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		for _, st := range steps(m) {
			if st.mat != nil {
				if err := materialize(ctx, conn, *st.mat); err != nil {
					return fmt.Errorf("archive: migration %d (%s): %w", m.Version, m.Name, err)
				}
				continue
			}
			if st.column != "" {
				var n uint64
				if err := conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?`,
					st.table, st.column).Scan(&n); err != nil {
					return fmt.Errorf("archive: migration %d (%s): %w", m.Version, m.Name, err)
				}
				if n > 0 {
					continue
				}
			}
			if err := conn.Exec(ctx, st.sql); err != nil {
				return fmt.Errorf("archive: migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		if err := recordMigration(ctx, conn, m); err != nil {
			return err
		}
	}
	return nil
}

// recordMigration notes m as applied on conn's schema_migrations.
func recordMigration(ctx context.Context, conn driver.Conn, m Migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("archive: record migration %d: %w", m.Version, err)
	}
	if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("archive: record migration %d: %w", m.Version, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("archive: record migration %d: %w", m.Version, err)
	}
	return nil
}
