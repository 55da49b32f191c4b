package archive

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
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
	{1, "rated_usage", `CREATE TABLE IF NOT EXISTS rated_usage (
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
	ORDER BY (subscription_id, event_id, line)`, ""},
	{2, "credit_ledger", `CREATE TABLE IF NOT EXISTS credit_ledger (
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
	ORDER BY (subscription_id, seq)`, ""},
	// The daily rollup (see rollup.go): usage_daily holds per (subscription,
	// day, feature) sums recomputed from rated_usage FINAL; the view counts
	// the raw rows inserted per (subscription, day) into usage_daily_dirty,
	// and usage_daily_done records the count each day was last computed
	// from, so a day whose count moved is recomputed.
	{3, "usage_daily", `CREATE TABLE IF NOT EXISTS usage_daily (
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
	ORDER BY (subscription_id, day, feature)`, ""},
	{4, "usage_daily_done", `CREATE TABLE IF NOT EXISTS usage_daily_done (
		subscription_id String,
		day Date,
		rows UInt64,
		version UInt64
	) ENGINE = ReplacingMergeTree(version)
	PARTITION BY toYYYYMM(day)
	ORDER BY (subscription_id, day)`, ""},
	{5, "usage_daily_dirty", `CREATE TABLE IF NOT EXISTS usage_daily_dirty (
		subscription_id String,
		day Date,
		rows UInt64
	) ENGINE = SummingMergeTree(rows)
	PARTITION BY toYYYYMM(day)
	ORDER BY (subscription_id, day)`, ""},
	{6, "usage_daily_dirty_mv", `CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_dirty_mv TO usage_daily_dirty AS
	SELECT subscription_id, toDate(event_time) AS day, count() AS rows
	FROM rated_usage GROUP BY subscription_id, day`, ""},
	// Rows archived before the view existed. Counted twice if inserted
	// between 6 and 7: harmless, a count only has to move to be noticed.
	{7, "usage_daily_dirty_backfill", `INSERT INTO usage_daily_dirty (subscription_id, day, rows)
	SELECT subscription_id, toDate(event_time) AS day, count() FROM rated_usage GROUP BY subscription_id, day`, ""},
	// The balance account's state after an entry (see balance.Entry.Snapshot),
	// from which a subscription whose Redis lost writes is rebuilt. Rows
	// from this version on have a version that decreases with time, so the
	// first archived copy of an entry wins (entries are immutable).
	{8, "credit_ledger_snapshot", `ALTER TABLE credit_ledger ADD COLUMN snapshot String`, "credit_ledger.snapshot"},
}

// Migrate creates the database if missing and applies every migration not yet
// recorded in schema_migrations.
func Migrate(ctx context.Context, c ConnConfig) error {
	if err := EnsureDatabase(ctx, c); err != nil {
		return err
	}
	conn, err := Open(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	return migrate(ctx, conn)
}

func migrate(ctx context.Context, conn driver.Conn) error {
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
	for _, m := range Migrations {
		if done[m.Version] {
			continue
		}
		skip := false
		if table, column, ok := strings.Cut(m.AddsColumn, "."); ok {
			var n uint64
			if err := conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?`,
				table, column).Scan(&n); err != nil {
				return fmt.Errorf("archive: migration %d (%s): %w", m.Version, m.Name, err)
			}
			skip = n > 0
		}
		if !skip {
			if err := conn.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("archive: migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
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
	}
	return nil
}
