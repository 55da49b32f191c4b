package archive

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// The daily rollup, usage_daily, must equal the deduplicated sums of
// rated_usage exactly. A materialized view sees only the block being
// inserted, so it cannot tell a redelivered row from a new one: a
// SummingMergeTree view double-counts duplicates, and an exact insert-time
// state would have to keep one entry per (event, line), no smaller than the
// raw table. So the view only records that a (subscription, day) changed
// (usage_daily_dirty: raw rows inserted, summed), and RefreshRollup
// recomputes those days from rated_usage FINAL. usage_daily_done keeps the
// count each day was computed from; a day is dirty while the two differ.
//
// Order makes it safe under concurrent inserts: ClickHouse commits the raw
// part before the view's row, and RefreshRollup reads the counts before the
// raw rows, so the rows it sums include at least those counted. A row
// counted later moves the count and its day is recomputed next time.

// RollupScope limits a refresh; zero values mean everything.
type RollupScope struct {
	Subscription string
	From, To     time.Time // days touching [From, To)
}

// dayKey is one (subscription, day) of the rollup.
type dayKey struct {
	sub string
	day string // YYYY-MM-DD
}

// refreshChunk bounds the (subscription, day) pairs recomputed per query.
const refreshChunk = 500

// RefreshRollup recomputes the days of usage_daily whose raw rows changed
// since they were last computed and returns how many days it recomputed.
// It is idempotent and safe to run concurrently with inserts and with itself.
func RefreshRollup(ctx context.Context, conn driver.Conn, scope RollupScope) (int, error) {
	version := uint64(time.Now().UnixNano()) // before reading: a later refresh wins
	where, args := scopeFilter(scope)
	// A UNION ALL, not a LEFT JOIN: with join_use_nulls=1 (a profile may set
	// it) a day never computed would join a NULL count and never be found.
	rows, err := conn.Query(ctx, `SELECT subscription_id, toString(day), sum(n) AS rows FROM (
		SELECT subscription_id, day, sum(rows) AS n, toUInt64(0) AS done, toUInt8(1) AS dirty
			FROM usage_daily_dirty WHERE `+where+` GROUP BY subscription_id, day
		UNION ALL
		SELECT subscription_id, day, toUInt64(0) AS n, argMax(rows, version) AS done, toUInt8(0) AS dirty
			FROM usage_daily_done WHERE `+where+` GROUP BY subscription_id, day)
		GROUP BY subscription_id, day
		HAVING max(dirty) = 1 AND rows != sum(done)`, append(args, args...)...)
	if err != nil {
		return 0, fmt.Errorf("archive: rollup: find changed days: %w", err)
	}
	var keys []dayKey
	counts := map[dayKey]uint64{}
	for rows.Next() {
		var k dayKey
		var n uint64
		if err := rows.Scan(&k.sub, &k.day, &n); err != nil {
			rows.Close()
			return 0, fmt.Errorf("archive: rollup: find changed days: %w", err)
		}
		keys = append(keys, k)
		counts[k] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("archive: rollup: find changed days: %w", err)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].sub != keys[j].sub {
			return keys[i].sub < keys[j].sub
		}
		return keys[i].day < keys[j].day
	})
	for i := 0; i < len(keys); i += refreshChunk {
		chunk := keys[i:min(i+refreshChunk, len(keys))]
		if err := recompute(ctx, conn, chunk, counts, version); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

func scopeFilter(s RollupScope) (string, []any) {
	conds := []string{"1 = 1"}
	var args []any
	if s.Subscription != "" {
		conds = append(conds, "subscription_id = ?")
		args = append(args, s.Subscription)
	}
	if !s.From.IsZero() {
		conds = append(conds, "day >= toDate(?)")
		args = append(args, s.From.UTC().Format(time.DateOnly))
	}
	if !s.To.IsZero() {
		conds = append(conds, "day <= toDate(?)")
		args = append(args, s.To.UTC().Format(time.DateOnly))
	}
	return strings.Join(conds, " AND "), args
}

// recompute writes usage_daily for the days of keys from rated_usage FINAL,
// then records the counts they were computed from.
func recompute(ctx context.Context, conn driver.Conn, keys []dayKey, counts map[dayKey]uint64, version uint64) error {
	subs := map[string]bool{}
	var pairs, subList []string
	lo, hi := keys[0].day, keys[0].day
	for _, k := range keys {
		pairs = append(pairs, "("+quote(k.sub)+", toDate('"+k.day+"'))")
		if !subs[k.sub] {
			subs[k.sub] = true
			subList = append(subList, quote(k.sub))
		}
		lo, hi = min(lo, k.day), max(hi, k.day)
	}
	inPairs := strings.Join(pairs, ", ")
	inSubs := strings.Join(subList, ", ")

	// Features already in the rollup for these days: a feature that no longer
	// has rows (its only row moved to another day) gets a zero row.
	stale := map[dayKey]map[string]bool{}
	rows, err := conn.Query(ctx, `SELECT subscription_id, toString(day), feature FROM usage_daily FINAL
		WHERE subscription_id IN (`+inSubs+`) AND (subscription_id, day) IN (`+inPairs+`)`)
	if err != nil {
		return fmt.Errorf("archive: rollup: read days: %w", err)
	}
	for rows.Next() {
		var k dayKey
		var f string
		if err := rows.Scan(&k.sub, &k.day, &f); err != nil {
			rows.Close()
			return fmt.Errorf("archive: rollup: read days: %w", err)
		}
		if stale[k] == nil {
			stale[k] = map[string]bool{}
		}
		stale[k][f] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("archive: rollup: read days: %w", err)
	}

	b, err := conn.PrepareBatch(ctx, `INSERT INTO usage_daily (subscription_id, day, feature, customer_id, quantity, credits_micro,
		funded_credits_micro, unfunded_credits_micro, money_value_nano, credit_currency, money_currency, events, version)`)
	if err != nil {
		return fmt.Errorf("archive: rollup: prepare: %w", err)
	}
	from, _ := time.Parse(time.DateOnly, lo)
	to, _ := time.Parse(time.DateOnly, hi)
	rows, err = conn.Query(ctx, `SELECT subscription_id, toString(toDate(event_time)) AS d, feature, any(customer_id),
		sum(quantity), `+usageSums+`, count()
		FROM rated_usage FINAL
		WHERE subscription_id IN (`+inSubs+`) AND event_time >= toDateTime(?) AND event_time < toDateTime(?)
		AND (subscription_id, toDate(event_time)) IN (`+inPairs+`)
		GROUP BY subscription_id, d, feature`, from.Unix(), to.AddDate(0, 0, 1).Unix())
	if err != nil {
		_ = b.Abort()
		return fmt.Errorf("archive: rollup: sum days: %w", err)
	}
	for rows.Next() {
		var k dayKey
		var feature, cust, ccur, mcur string
		var q decimal.Decimal
		var sum usageSum
		var n uint64
		if err := rows.Scan(&k.sub, &k.day, &feature, &cust, &q, &sum.credits, &sum.funded, &sum.unfunded, &ccur, &sum.money, &mcur, &n); err != nil {
			rows.Close()
			_ = b.Abort()
			return fmt.Errorf("archive: rollup: sum days: %w", err)
		}
		delete(stale[k], feature)
		day, _ := time.Parse(time.DateOnly, k.day)
		c, ok1 := FixedInt64(sum.credits, 0)
		fu, ok2 := FixedInt64(sum.funded, 0)
		un, ok3 := FixedInt64(sum.unfunded, 0)
		m, ok4 := FixedInt64(sum.money, 0)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			rows.Close()
			_ = b.Abort()
			return fmt.Errorf("archive: rollup: %s on %s, %s: a day's credits (%s micro) or money (%s nano) beyond Int64", k.sub, k.day, feature, sum.credits, sum.money)
		}
		if err := b.Append(k.sub, day, feature, cust, q, c, fu, un, m, ccur, mcur, n, version); err != nil {
			rows.Close()
			_ = b.Abort()
			return fmt.Errorf("archive: rollup: %w", err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		_ = b.Abort()
		return fmt.Errorf("archive: rollup: sum days: %w", err)
	}
	for k, fs := range stale {
		day, _ := time.Parse(time.DateOnly, k.day)
		for f := range fs {
			if err := b.Append(k.sub, day, f, "", decimal.Zero, int64(0), int64(0), int64(0), int64(0), "", "", uint64(0), version); err != nil {
				_ = b.Abort()
				return fmt.Errorf("archive: rollup: %w", err)
			}
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("archive: rollup: write usage_daily: %w", err)
	}

	d, err := conn.PrepareBatch(ctx, "INSERT INTO usage_daily_done (subscription_id, day, rows, version)")
	if err != nil {
		return fmt.Errorf("archive: rollup: prepare: %w", err)
	}
	for _, k := range keys {
		day, _ := time.Parse(time.DateOnly, k.day)
		if err := d.Append(k.sub, day, counts[k], version); err != nil {
			_ = d.Abort()
			return fmt.Errorf("archive: rollup: %w", err)
		}
	}
	if err := d.Send(); err != nil {
		return fmt.Errorf("archive: rollup: write usage_daily_done: %w", err)
	}
	return nil
}

// quote is a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// KeepRollupFresh refreshes the whole rollup every interval until ctx ends,
// so analysts reading usage_daily directly see it at most about one interval
// behind (Usage and BuildInvoice refresh what they read anyway). report gets
// each failed refresh; the next tick retries.
func KeepRollupFresh(ctx context.Context, conn driver.Conn, interval time.Duration, report func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := RefreshRollup(ctx, conn, RollupScope{}); err != nil && ctx.Err() == nil && report != nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
