package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// ChargeCheck compares per-event charges in rated_usage with the archived
// usage ledger entries of one subscription.
//
// The bound is the archive's last entry with a snapshot (UpToSeq): its
// snapshot holds the offset watermark of every partition the subscription
// drew from, so the events at or below them are exactly those whose
// charges are in the entries up to UpToSeq (each Apply call ends with an
// entry carrying a snapshot, and its rated rows are archived before its
// entries). Rated rows past the watermarks are in flight while younger
// than the lag; older, they are events rated and never charged.
type ChargeCheck struct {
	UpToSeq int64 `json:"up_to_seq"`
	// RatedCredits: funded + overage credits of the rated_usage FINAL lines
	// at or below the watermarks (what their usage entries must sum to;
	// unfunded credits are not drawn).
	RatedCredits  decimal.Decimal `json:"rated_credits"`
	LedgerCredits decimal.Decimal `json:"ledger_credits"` // minus the sum of usage entries up to UpToSeq
	RatedEvents   uint64          `json:"rated_events"`   // distinct event ids of those lines
	LedgerEvents  uint64          `json:"ledger_events"`  // sum of the entries' event counts
	// Uncharged: events rated past the watermarks before the lag.
	Uncharged        uint64          `json:"uncharged_events,omitempty"`
	UnchargedCredits decimal.Decimal `json:"uncharged_credits"`
}

// Drifts reports whether rated_usage and the ledger disagree.
func (c *ChargeCheck) Drifts() bool {
	return !c.RatedCredits.Equal(c.LedgerCredits) || c.RatedEvents != c.LedgerEvents || c.Uncharged > 0
}

// chargeChecks compares rated_usage with the archived ledger for subs
// (those with a snapshot in the archive); rows rated before cutoff and
// past the watermarks are uncharged.
func chargeChecks(ctx context.Context, conn driver.Conn, subs []string, cutoff time.Time) (map[string]*ChargeCheck, error) {
	out := map[string]*ChargeCheck{}
	const chunk = 500 // bounds the query's size
	for lo := 0; lo < len(subs); lo += chunk {
		part := subs[lo:min(lo+chunk, len(subs))]
		marks, err := watermarks(ctx, conn, part)
		if err != nil {
			return nil, err
		}
		if len(marks) == 0 {
			continue
		}
		if err := compareCharges(ctx, conn, marks, cutoff, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type marks struct {
	seq uint64
	w   map[string]int64 // "topic/partition" → last applied offset
}

// watermarks reads each subscription's last archived entry with a snapshot.
func watermarks(ctx context.Context, conn driver.Conn, subs []string) (map[string]marks, error) {
	rows, err := conn.Query(ctx, `SELECT subscription_id, maxIf(seq, snapshot != ''), argMaxIf(snapshot, seq, snapshot != '')
		FROM credit_ledger FINAL WHERE subscription_id IN (`+lits(subs)+`) GROUP BY subscription_id`)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read ledger snapshots: %w", err)
	}
	defer rows.Close()
	out := map[string]marks{}
	for rows.Next() {
		var sub, snap string
		var seq uint64
		if err := rows.Scan(&sub, &seq, &snap); err != nil {
			return nil, fmt.Errorf("reconcile: read ledger snapshots: %w", err)
		}
		if snap == "" {
			continue
		}
		var s struct {
			W json.RawMessage `json:"w"`
		}
		if err := json.Unmarshal([]byte(snap), &s); err != nil {
			return nil, fmt.Errorf("reconcile: %s: snapshot of seq %d: %w", sub, seq, err)
		}
		m := marks{seq: seq, w: map[string]int64{}}
		var w map[string]string
		if len(s.W) > 0 && s.W[0] == '{' { // cjson writes an empty hash as {} or []
			if err := json.Unmarshal(s.W, &w); err != nil {
				return nil, fmt.Errorf("reconcile: %s: watermarks of seq %d: %w", sub, seq, err)
			}
		}
		for k, v := range w {
			if m.w[k], err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("reconcile: %s: watermark %s=%q of seq %d", sub, k, v, seq)
			}
		}
		out[sub] = m
	}
	return out, rows.Err()
}

// compareCharges fills out for the subscriptions of ms: rated lines at or
// below the watermarks against usage entries up to the snapshot's seq.
func compareCharges(ctx context.Context, conn driver.Conn, ms map[string]marks, cutoff time.Time, out map[string]*ChargeCheck) error {
	var subs, seqs, keys, offs []string
	for sub, m := range ms {
		subs, seqs = append(subs, sub), append(seqs, strconv.FormatUint(m.seq, 10))
		for tp, off := range m.w {
			keys, offs = append(keys, strings.ReplaceAll(quote(sub+"\x1f"+tp), "\x1f", `\x1F`)), append(offs, strconv.FormatInt(off, 10))
		}
		out[sub] = &ChargeCheck{UpToSeq: int64(m.seq)}
	}
	in := lits(subs)
	// Rows without a source have no watermark: counted as covered.
	covered := `(source_topic = '' OR source_offset <= transform(concat(subscription_id, '\x1F', source_topic, '/', toString(source_partition)), [` +
		strings.Join(keys, ",") + `], CAST([` + strings.Join(offs, ",") + `] AS Array(Int64)), toInt64(-1)))`
	if len(keys) == 0 {
		covered = `(source_topic = '')`
	}
	// Sums of micro-credits as Decimal(38, 0): an Int64 sum would wrap.
	rows, err := conn.Query(ctx, `SELECT subscription_id, sumIf(charge, covered), uniqExactIf(event_id, covered),
			sumIf(charge, NOT covered AND rated_at <= ?), uniqExactIf(event_id, NOT covered AND rated_at <= ?)
		FROM (SELECT subscription_id, event_id, rated_at,
			toDecimal128(funded_credits_micro, 0) + toDecimal128(if(status = 'overage', unfunded_credits_micro, 0), 0) AS charge, `+covered+` AS covered
			FROM rated_usage FINAL WHERE subscription_id IN (`+in+`))
		GROUP BY subscription_id`, cutoff.UTC(), cutoff.UTC())
	if err != nil {
		return fmt.Errorf("reconcile: read rated_usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sub string
		var c ChargeCheck
		if err := rows.Scan(&sub, &c.RatedCredits, &c.RatedEvents, &c.UnchargedCredits, &c.Uncharged); err != nil {
			return fmt.Errorf("reconcile: read rated_usage: %w", err)
		}
		if o := out[sub]; o != nil {
			o.RatedCredits, o.RatedEvents = c.RatedCredits.Shift(-credit.Scale), c.RatedEvents
			o.UnchargedCredits, o.Uncharged = c.UnchargedCredits.Shift(-credit.Scale), c.Uncharged
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reconcile: read rated_usage: %w", err)
	}
	rows.Close()

	upTo := `transform(subscription_id, [` + in + `], CAST([` + strings.Join(seqs, ",") + `] AS Array(UInt64)), toUInt64(0))`
	lrows, err := conn.Query(ctx, `SELECT subscription_id, -sumIf(toDecimal128(amount_micro, 0), kind = 'usage' AND seq <= `+upTo+`),
			sumIf(event_count, kind = 'usage' AND seq <= `+upTo+`)
		FROM credit_ledger FINAL WHERE subscription_id IN (`+in+`) GROUP BY subscription_id`)
	if err != nil {
		return fmt.Errorf("reconcile: read usage entries: %w", err)
	}
	defer lrows.Close()
	for lrows.Next() {
		var sub string
		var credits decimal.Decimal
		var events uint64
		if err := lrows.Scan(&sub, &credits, &events); err != nil {
			return fmt.Errorf("reconcile: read usage entries: %w", err)
		}
		if o := out[sub]; o != nil {
			o.LedgerCredits, o.LedgerEvents = credits.Shift(-credit.Scale), events
		}
	}
	return lrows.Err()
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quote(s)
	}
	return out
}

func lits(ss []string) string { return strings.Join(quoteAll(ss), ", ") }
