package archive

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/fault"
)

// ErrLedgerConflict: an entry with the (subscription, seq) of an archived
// entry but other content. The archive keeps the first; the balance store
// that produced the second lost writes and must be repaired.
var ErrLedgerConflict = fault.New(fault.Conflict, "archive: ledger entry conflicts with the archived one")

// LedgerConflictError lists the refused entries.
type LedgerConflictError struct {
	Keys []LedgerKey
}

// LedgerKey names a ledger entry.
type LedgerKey struct {
	SubscriptionID string
	Seq            uint64
}

func (e *LedgerConflictError) Error() string {
	var b strings.Builder
	for i, k := range e.Keys {
		if i == 5 {
			fmt.Fprintf(&b, " and %d more", len(e.Keys)-5)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s seq %d", k.SubscriptionID, k.Seq)
	}
	return fmt.Sprintf("%v: %s", ErrLedgerConflict, b.String())
}

// Unwrap makes errors.Is(err, ErrLedgerConflict) true.
func (e *LedgerConflictError) Unwrap() error { return ErrLedgerConflict }

// Subscriptions are the subscriptions with a refused entry, sorted, once each.
func (e *LedgerConflictError) Subscriptions() []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range e.Keys {
		if !seen[k.SubscriptionID] {
			seen[k.SubscriptionID] = true
			out = append(out, k.SubscriptionID)
		}
	}
	sort.Strings(out)
	return out
}

// LedgerHead is what decides whether two copies of an entry are the same
// entry: kind, amount, balance after, grant, event count and time (to the
// second, as archived).
type LedgerHead struct {
	Seq          uint64
	Kind         string
	Amount       credit.Amount
	BalanceAfter credit.Amount
	GrantID      string
	EventCount   uint64
	CreatedAt    time.Time
	Snapshot     string // compared when both copies have one
}

// Head is the identity of r.
func (r LedgerRow) Head() LedgerHead {
	return LedgerHead{Seq: r.Seq, Kind: r.Kind, Amount: r.Amount, BalanceAfter: r.BalanceAfter, GrantID: r.GrantID,
		EventCount: r.EventCount, CreatedAt: r.CreatedAt.UTC().Truncate(time.Second), Snapshot: r.Snapshot}
}

// Same reports whether h and o are the same entry.
func (h LedgerHead) Same(o LedgerHead) bool {
	return h.Seq == o.Seq && h.Kind == o.Kind && h.Amount == o.Amount && h.BalanceAfter == o.BalanceAfter &&
		h.GrantID == o.GrantID && h.EventCount == o.EventCount && h.CreatedAt.Equal(o.CreatedAt) &&
		(h.Snapshot == "" || o.Snapshot == "" || h.Snapshot == o.Snapshot)
}

// CheckLedger compares rows with the archived entries of the same
// (subscription, seq). It returns the rows not yet archived, or a
// *LedgerConflictError when any row differs from its archived entry (or
// from another row of the same key).
func CheckLedger(ctx context.Context, conn driver.Conn, rows []LedgerRow) ([]LedgerRow, error) {
	type key = LedgerKey
	have := map[key]LedgerHead{}
	const chunk = 2000
	for lo := 0; lo < len(rows); lo += chunk {
		part := rows[lo:min(lo+chunk, len(rows))]
		var in strings.Builder
		for i := range part {
			if i > 0 {
				in.WriteString(",")
			}
			in.WriteString("(" + quote(part[i].SubscriptionID) + "," + strconv.FormatUint(part[i].Seq, 10) + ")")
		}
		q := `SELECT subscription_id, seq, toString(kind), amount_micro, balance_after_micro, grant_id, event_count, created_at, snapshot
			FROM credit_ledger WHERE (subscription_id, seq) IN (` + in.String() + `)`
		if err := scanHeads(ctx, conn, q, func(sub string, h LedgerHead) {
			k := key{sub, h.Seq}
			if _, ok := have[k]; !ok {
				have[k] = h // any copy: copies that differ are refused on the way in
			}
		}); err != nil {
			return nil, fmt.Errorf("archive: check credit_ledger: %w", err)
		}
	}
	var conflicts []key
	var fresh []LedgerRow
	batch := map[key]LedgerHead{}
	for i := range rows {
		k := key{rows[i].SubscriptionID, rows[i].Seq}
		h := rows[i].Head()
		if a, ok := have[k]; ok {
			if !a.Same(h) {
				conflicts = append(conflicts, k)
			}
			continue
		}
		if b, ok := batch[k]; ok {
			if !b.Same(h) {
				conflicts = append(conflicts, k)
			}
			continue
		}
		batch[k] = h
		fresh = append(fresh, rows[i])
	}
	if len(conflicts) > 0 {
		return nil, &LedgerConflictError{Keys: conflicts}
	}
	return fresh, nil
}

func scanHeads(ctx context.Context, conn driver.Conn, q string, f func(sub string, h LedgerHead), args ...any) error {
	rs, err := conn.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var sub string
		var h LedgerHead
		if err := rs.Scan(&sub, &h.Seq, &h.Kind, (*int64)(&h.Amount), (*int64)(&h.BalanceAfter), &h.GrantID, &h.EventCount, &h.CreatedAt, &h.Snapshot); err != nil {
			return err
		}
		h.CreatedAt = h.CreatedAt.UTC()
		f(sub, h)
	}
	return rs.Err()
}

// LedgerHeads returns, per subscription (all, or those given), its
// archived entry with the highest seq.
func LedgerHeads(ctx context.Context, conn driver.Conn, subs ...string) (map[string]LedgerHead, error) {
	out := map[string]LedgerHead{}
	where := ""
	if len(subs) > 0 {
		q := make([]string, len(subs))
		for i, s := range subs {
			q[i] = quote(s)
		}
		where = "WHERE subscription_id IN (" + strings.Join(q, ",") + ")"
	}
	err := scanHeads(ctx, conn, `SELECT subscription_id, max(seq), toString(argMax(kind, seq)), argMax(amount_micro, seq),
		argMax(balance_after_micro, seq), argMax(grant_id, seq), argMax(event_count, seq), argMax(created_at, seq), argMax(snapshot, seq)
		FROM credit_ledger `+where+` GROUP BY subscription_id`, func(sub string, h LedgerHead) { out[sub] = h })
	if err != nil {
		return nil, fmt.Errorf("archive: ledger heads: %w", err)
	}
	return out, nil
}

// LedgerEntries returns sub's archived entries with seq >= from, in order.
func LedgerEntries(ctx context.Context, conn driver.Conn, sub string, from uint64) ([]LedgerRow, error) {
	rs, err := conn.Query(ctx, `SELECT seq, customer_id, toString(kind), amount_micro, balance_after_micro, credit_currency, grant_id,
		grant_type, money_amount, money_currency, event_count, reason, actor, idempotency_key, created_at, snapshot
		FROM credit_ledger FINAL WHERE subscription_id = ? AND seq >= ? ORDER BY seq`, sub, from)
	if err != nil {
		return nil, fmt.Errorf("archive: ledger of %s: %w", sub, err)
	}
	defer rs.Close()
	var out []LedgerRow
	for rs.Next() {
		r := LedgerRow{SubscriptionID: sub}
		if err := rs.Scan(&r.Seq, &r.CustomerID, &r.Kind, (*int64)(&r.Amount), (*int64)(&r.BalanceAfter), &r.CreditCurrency, &r.GrantID, &r.GrantType,
			&r.MoneyAmount, &r.MoneyCurrency, &r.EventCount, &r.Reason, &r.Actor, &r.IdempotencyKey, &r.CreatedAt, &r.Snapshot); err != nil {
			return nil, fmt.Errorf("archive: ledger of %s: %w", sub, err)
		}
		r.CreatedAt = r.CreatedAt.UTC()
		out = append(out, r)
	}
	return out, rs.Err()
}

// RatedEvent is where an archived event came from.
type RatedEvent struct {
	ID        string
	Topic     string
	Partition int32
	Offset    int64
}

// RatedEventsSince returns sub's events rated at or after since, once each.
func RatedEventsSince(ctx context.Context, conn driver.Conn, sub string, since time.Time) ([]RatedEvent, error) {
	rs, err := conn.Query(ctx, `SELECT event_id, any(source_topic), any(source_partition), any(source_offset) FROM rated_usage
		WHERE subscription_id = ? AND rated_at >= ? GROUP BY event_id`, sub, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("archive: events of %s: %w", sub, err)
	}
	defer rs.Close()
	var out []RatedEvent
	for rs.Next() {
		var e RatedEvent
		if err := rs.Scan(&e.ID, &e.Topic, &e.Partition, &e.Offset); err != nil {
			return nil, fmt.Errorf("archive: events of %s: %w", sub, err)
		}
		out = append(out, e)
	}
	return out, rs.Err()
}

// UniqueCount is a value a UNIQUE_COUNT line of a subscription counted
// first in its meter's billing period [Period, PeriodEnd)
// (RatedRow.UniqueValue), with the event's source.
type UniqueCount struct {
	Feature, Value    string
	Period, PeriodEnd time.Time
	Topic             string
	Partition         int32
	Offset            int64
}

// UniqueCounts lists the UNIQUE_COUNT values sub's lines counted in billing
// periods ending after endAfter, by the rows' latest versions (FINAL), as
// the rest of the archive's truth: a line archived again as a repeat
// (replayed after a repair, another event having counted the value first)
// counts it no more, so a later repair does not credit the value to it.
func UniqueCounts(ctx context.Context, conn driver.Conn, sub string, endAfter time.Time) ([]UniqueCount, error) {
	// The period filter outside FINAL: moved to PREWHERE it could see an
	// older version of a row.
	rs, err := conn.Query(ctx, `SELECT feature, unique_value, unique_period_ms, unique_period_end_ms, source_topic, source_partition, source_offset
		FROM (SELECT feature, unique_value, unique_period_ms, unique_period_end_ms, source_topic, source_partition, source_offset
			FROM rated_usage FINAL WHERE subscription_id = ?)
		WHERE unique_period_end_ms > ?`, sub, endAfter.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("archive: UNIQUE_COUNT values of %s: %w", sub, err)
	}
	defer rs.Close()
	var out []UniqueCount
	for rs.Next() {
		var u UniqueCount
		var p, pe int64
		if err := rs.Scan(&u.Feature, &u.Value, &p, &pe, &u.Topic, &u.Partition, &u.Offset); err != nil {
			return nil, fmt.Errorf("archive: UNIQUE_COUNT values of %s: %w", sub, err)
		}
		u.Period, u.PeriodEnd = time.UnixMilli(p).UTC(), time.UnixMilli(pe).UTC()
		out = append(out, u)
	}
	return out, rs.Err()
}
