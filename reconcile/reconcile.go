// Package reconcile proves the ledger invariant across the two stores: for
// every subscription, the Redis balance equals the sum of its credit_ledger
// entries in ClickHouse, and ClickHouse holds every ledger sequence number
// Redis wrote. It reports drift and can export missing or altered entries
// from Redis (the source of truth) to the archive.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// ErrDrift is returned by callers (the CLI) when a report has drift.
var ErrDrift = errors.New("reconcile: drift between Redis and the archive")

// Options say what to check.
type Options struct {
	// Subscriptions to check; empty: every subscription in the archive's
	// ledger plus Also.
	Subscriptions []string
	// Also adds subscriptions known elsewhere (the catalog), so one with a
	// Redis ledger and no archived entry is checked too.
	Also []string
	// Deep compares every entry's amount and kind, not only sums and counts.
	Deep bool
	// Lag is how long an entry may stay unarchived before it is missing:
	// younger entries are in flight (the engine archives after Redis).
	Lag time.Duration
	// Repair rebuilds from the archive the subscriptions whose Redis lost
	// writes (RedisBehind, RedisMissing with a snapshot), archives the
	// entries the archive lacks from the others' Redis, then checks again.
	Repair bool
	// DedupeWindow of the engine's balance store (Repairer.DedupeWindow).
	DedupeWindow time.Duration
}

// SeqRange is an inclusive range of ledger sequence numbers.
type SeqRange struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// Drift is what differs for one subscription.
type Drift struct {
	Subscription string          `json:"subscription_id"`
	RedisTotal   decimal.Decimal `json:"redis_total"`   // balance.BalanceView.Total
	ArchiveTotal decimal.Decimal `json:"archive_total"` // sum(amount) of credit_ledger FINAL
	// Difference is Redis's balance after the archive's last entry less the
	// archived sum: zero when every archived entry is right.
	Difference   decimal.Decimal `json:"difference"`
	RedisLastSeq int64           `json:"redis_last_seq"`
	ArchiveLast  int64           `json:"archive_last_seq"`
	ArchiveSeqs  uint64          `json:"archive_entries"`
	Missing      []SeqRange      `json:"missing,omitempty"`    // in Redis, not in the archive
	Mismatched   []int64         `json:"mismatched,omitempty"` // archived with another amount or kind (Deep)
	Extra        []int64         `json:"extra,omitempty"`      // archived, unknown to Redis
	RedisMissing bool            `json:"redis_missing,omitempty"`
	// RedisInconsistent: Redis's total differs from the balance after its
	// own last ledger entry.
	RedisInconsistent bool `json:"redis_inconsistent,omitempty"`
	Pending           int  `json:"pending,omitempty"`  // recent entries not archived yet (not drift)
	Repaired          int  `json:"repaired,omitempty"` // entries written by Repair
	// RedisBehind: Redis's ledger lacks the archive's last entry or holds
	// another entry at its seq (lost acknowledged writes, perhaps written on
	// since). Redis's own entries past the archive are then not exported.
	RedisBehind   bool   `json:"redis_behind,omitempty"`
	RedisRepaired bool   `json:"redis_repaired,omitempty"` // rebuilt from the archive by Repair
	RepairError   string `json:"repair_error,omitempty"`
	// Charges compares rated_usage with the archived usage entries.
	Charges *ChargeCheck `json:"charges,omitempty"`
	Classes []string     `json:"classes,omitempty"` // the drift classes, see Drift.Kinds
}

// Report is the outcome of a run.
type Report struct {
	Checked int     `json:"checked"`
	Drift   []Drift `json:"drift"` // subscriptions that drift or were repaired (see Drift.Drifts)
	// ChargesUnchecked counts subscriptions whose archived ledger has no
	// snapshot (archived before snapshots existed): their rated_usage is
	// not compared with the ledger.
	ChargesUnchecked int `json:"charges_unchecked,omitempty"`
}

type archived struct {
	count, maxSeq uint64
	sum           decimal.Decimal
	customer      string
}

// Run compares Redis with the archive. With Repair it exports what the
// archive lacks and reports what still drifts afterwards (with Repaired set).
func Run(ctx context.Context, store *balance.Store, conn driver.Conn, o Options) (Report, error) {
	arch, err := archiveTotals(ctx, conn, o.Subscriptions)
	if err != nil {
		return Report{}, err
	}
	subs := o.Subscriptions
	if len(subs) == 0 {
		seen := map[string]bool{}
		for s := range arch {
			seen[s] = true
		}
		for _, s := range o.Also {
			seen[s] = true
		}
		for s := range seen {
			subs = append(subs, s)
		}
	}
	sort.Strings(subs)
	rep := Report{Checked: len(subs), Drift: []Drift{}}
	behind, err := redisBehind(ctx, store, conn, subs)
	if err != nil {
		return rep, err
	}
	charges, err := chargeChecks(ctx, conn, subs, time.Now().Add(-o.Lag))
	if err != nil {
		return rep, err
	}
	for _, sub := range subs {
		if _, ok := charges[sub]; !ok && arch[sub].count > 0 {
			rep.ChargesUnchecked++
		}
	}
	for _, sub := range subs {
		d, err := check(ctx, store, conn, sub, arch[sub], o)
		if err != nil {
			return rep, err
		}
		if d == nil {
			continue
		}
		d.RedisBehind, d.Charges = behind[sub], charges[sub]
		if !d.Drifts() {
			continue
		}
		if o.Repair && d.RedisBehind {
			r := &Repairer{Store: store, Conn: conn, DedupeWindow: o.DedupeWindow}
			if _, repaired, err := r.Repair(ctx, sub); err != nil {
				d.RepairError = err.Error()
			} else if repaired {
				if d, err = recheck(ctx, store, conn, sub, arch[sub], o, charges[sub]); err != nil {
					return rep, err
				}
				d.RedisRepaired = true
			}
		}
		// Redis's entries are exported only while it holds the archive's:
		// entries written on a state that lost writes never reach it.
		if o.Repair && !d.RedisBehind && !d.RedisMissing && (len(d.Missing) > 0 || len(d.Mismatched) > 0) {
			n, err := repair(ctx, store, conn, sub, arch[sub].customer, d)
			if err != nil {
				return rep, err
			}
			one, err := archiveTotals(ctx, conn, []string{sub})
			if err != nil {
				return rep, err
			}
			repaired := d.RedisRepaired
			if d, err = recheck(ctx, store, conn, sub, one[sub], o, charges[sub]); err != nil {
				return rep, err
			}
			d.Repaired, d.RedisRepaired = n, repaired
		}
		d.Classes = d.Kinds()
		rep.Drift = append(rep.Drift, *d)
	}
	return rep, nil
}

// recheck checks sub again after a repair; the result is never nil.
func recheck(ctx context.Context, store *balance.Store, conn driver.Conn, sub string, a archived, o Options, c *ChargeCheck) (*Drift, error) {
	d, err := check(ctx, store, conn, sub, a, o)
	if err != nil {
		return nil, err
	}
	if d == nil {
		d = &Drift{Subscription: sub}
	}
	b, err := redisBehind(ctx, store, conn, []string{sub})
	if err != nil {
		return nil, err
	}
	d.RedisBehind, d.Charges = b[sub], c
	return d, nil
}

// redisBehind reports the subscriptions whose Redis ledger lacks the
// archive's last entry or holds another entry at its seq (Repairer.Stale's
// test; an account restored up to that entry agrees through its base).
func redisBehind(ctx context.Context, store *balance.Store, conn driver.Conn, subs []string) (map[string]bool, error) {
	out := map[string]bool{}
	var with []string
	var at []int64
	heads := map[string]archive.LedgerHead{}
	for lo := 0; lo < len(subs); lo += 1000 {
		hs, err := archive.LedgerHeads(ctx, conn, subs[lo:min(lo+1000, len(subs))]...)
		if err != nil {
			return nil, err
		}
		for s, h := range hs {
			heads[s] = h
		}
	}
	for _, s := range subs {
		if h, ok := heads[s]; ok {
			with, at = append(with, s), append(at, int64(h.Seq))
		}
	}
	if len(with) == 0 {
		return out, nil
	}
	rh, err := store.Heads(ctx, with, at)
	if err != nil {
		return nil, fmt.Errorf("reconcile: redis ledger heads: %w", err)
	}
	for i, s := range with {
		h := heads[s]
		if agrees(s, rh[i].Entry, h) {
			continue
		}
		if rh[i].Entry == nil && rh[i].Seq >= 0 {
			bal, err := store.Balance(ctx, s)
			if err != nil && !errors.Is(err, balance.ErrUnknownSubscription) {
				return nil, fmt.Errorf("reconcile: %s: %w", s, err)
			}
			if err == nil && bal.LedgerBase == int64(h.Seq) && bal.BaseBalance == h.BalanceAfter {
				continue
			}
		}
		out[s] = true
	}
	return out, nil
}

// archiveTotals reads count, max seq and sum per subscription in one scan.
func archiveTotals(ctx context.Context, conn driver.Conn, subs []string) (map[string]archived, error) {
	q := `SELECT subscription_id, count(), max(seq), sum(toDecimal128(amount_micro, 0)), any(customer_id) FROM credit_ledger FINAL`
	if len(subs) > 0 {
		lits := make([]string, len(subs))
		for i, s := range subs {
			lits[i] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
		}
		q += ` WHERE subscription_id IN (` + strings.Join(lits, ", ") + `)`
	}
	rows, err := conn.Query(ctx, q+` GROUP BY subscription_id`)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read archive ledger: %w", err)
	}
	defer rows.Close()
	out := map[string]archived{}
	for rows.Next() {
		var s string
		var a archived
		if err := rows.Scan(&s, &a.count, &a.maxSeq, &a.sum, &a.customer); err != nil {
			return nil, fmt.Errorf("reconcile: read archive ledger: %w", err)
		}
		a.sum = a.sum.Shift(-credit.Scale) // micro-credits
		out[s] = a
	}
	return out, rows.Err()
}

// check returns the subscription's drift, or nil when both stores agree.
//
// The engine archives a ledger entry after Redis wrote it, so on a live
// system the archive trails Redis. The comparison is therefore made at the
// archive's last entry M: the archived sum must equal Redis's balance after
// entry M. Entries after M are in flight while younger than lag, missing
// once older.
func check(ctx context.Context, store *balance.Store, conn driver.Conn, sub string, a archived, o Options) (*Drift, error) {
	d := &Drift{Subscription: sub, ArchiveTotal: a.sum, ArchiveSeqs: a.count, ArchiveLast: int64(a.maxSeq)}
	bal, err := store.Balance(ctx, sub)
	switch {
	case errors.Is(err, balance.ErrUnknownSubscription) && a.count == 0:
		return nil, nil // known to neither store (e.g. a catalog entry without an account yet)
	case errors.Is(err, balance.ErrUnknownSubscription):
		d.RedisMissing = true
		d.Difference = a.sum.Neg()
		return d, nil
	case err != nil:
		return nil, fmt.Errorf("reconcile: %s: %w", sub, err)
	}
	d.RedisTotal = bal.Total.Decimal()

	// Redis's ledger from M on: entry M itself, then the tail.
	from := max(int64(a.maxSeq), 1)
	var atM decimal.Decimal
	foundM := false
	var last balance.Entry
	cut := int64(0) // first tail seq still in flight
	oldest := time.Now().Add(-o.Lag)
	for {
		es, err := store.Ledger(ctx, sub, from, 1000)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %s: %w", sub, err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if e.Seq == int64(a.maxSeq) {
				atM, foundM = e.Balance.Decimal(), true
			}
			if e.Seq > int64(a.maxSeq) && cut == 0 && e.Time.After(oldest) {
				cut = e.Seq
			}
			last = e
		}
		from = es[len(es)-1].Seq + 1
	}
	if base := bal.LedgerBase; base > 0 {
		// Restored from the archive: entries up to base live only there.
		if int64(a.maxSeq) == base {
			atM, foundM = bal.BaseBalance.Decimal(), true
		}
		if last.Seq < base {
			last = balance.Entry{Seq: base, Balance: bal.BaseBalance}
		}
	}
	if !foundM && a.maxSeq > 0 {
		// Redis lacks the archive's last entry: the difference is what its
		// balance lost (or gained on a state that lost writes).
		atM = d.RedisTotal
	}
	d.RedisLastSeq = last.Seq
	if last.Seq == 0 { // nothing from M on: Redis is behind the archive
		hs, err := store.Heads(ctx, []string{sub}, []int64{0})
		if err != nil {
			return nil, fmt.Errorf("reconcile: %s: %w", sub, err)
		}
		d.RedisLastSeq = max(hs[0].Seq, 0)
	}
	if a.maxSeq > 0 && last.Seq < int64(a.maxSeq) {
		d.Extra = append(d.Extra, int64(a.maxSeq)) // archived past Redis's last entry
	}
	if cut > 0 {
		d.Pending = int(last.Seq - cut + 1)
	}
	// Redis's own invariant: its total is the balance after its last entry.
	if last.Seq > 0 && !last.Balance.Decimal().Equal(d.RedisTotal) {
		d.RedisInconsistent = true
	}

	var archivedSeqs map[int64]entryKey
	if o.Deep || a.count != a.maxSeq {
		if archivedSeqs, err = archiveEntries(ctx, conn, sub); err != nil {
			return nil, err
		}
	}
	if o.Deep {
		if err := compareAll(ctx, store, sub, archivedSeqs, d, bal.LedgerBase); err != nil {
			return nil, err
		}
	} else {
		// Gaps inside the archived range (count below max seq), then the tail.
		if a.count != a.maxSeq {
			d.Missing = gaps(archivedSeqs, 1, int64(a.maxSeq))
		}
		if d.RedisLastSeq > int64(a.maxSeq) {
			d.Missing = append(d.Missing, SeqRange{int64(a.maxSeq) + 1, d.RedisLastSeq})
		}
	}
	if cut > 0 {
		d.Missing = clip(d.Missing, cut)
	}
	// Gaps below M may be in flight too (entries written by two processes,
	// e.g. the API's top-up archived before the engine's usage): they count
	// on the archive's side while young.
	inFlight, err := youngGaps(ctx, store, sub, d, int64(a.maxSeq), oldest)
	if err != nil {
		return nil, err
	}
	d.Difference = atM.Sub(a.sum).Sub(inFlight)
	return d, nil
}

// Drifts reports whether d is drift (pending entries alone are not).
func (d *Drift) Drifts() bool {
	return len(d.Kinds()) > 0
}

// Kinds names d's drift classes: redis_behind (lost writes, see
// RedisBehind), redis_lost, charges (rated_usage against the archived
// usage entries, see ChargeCheck), then the archive against Redis:
// balance (Difference), missing, altered, extra, redis_inconsistent.
func (d *Drift) Kinds() []string {
	var k []string
	add := func(ok bool, name string) {
		if ok {
			k = append(k, name)
		}
	}
	add(d.RedisBehind && !d.RedisMissing, "redis_behind")
	add(d.RedisMissing, "redis_lost")
	add(d.Charges != nil && d.Charges.Drifts(), "charges")
	add(!d.Difference.IsZero(), "balance")
	add(len(d.Missing) > 0, "missing")
	add(len(d.Mismatched) > 0, "altered")
	add(len(d.Extra) > 0, "extra")
	add(d.RedisInconsistent, "redis_inconsistent")
	return k
}

// youngGaps moves the missing entries up to seq m that are younger than
// oldest from d.Missing to d.Pending and returns the sum of their amounts.
func youngGaps(ctx context.Context, store *balance.Store, sub string, d *Drift, m int64, oldest time.Time) (decimal.Decimal, error) {
	sum := decimal.Zero
	var keep []SeqRange
	for _, r := range d.Missing {
		if r.From > m {
			keep = append(keep, r)
			continue
		}
		young := map[int64]bool{}
		for from := r.From; from <= min(r.To, m); {
			es, err := store.Ledger(ctx, sub, from, int(min(r.To, m)-from+1))
			if err != nil {
				return sum, fmt.Errorf("reconcile: %s: %w", sub, err)
			}
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				if e.Seq <= min(r.To, m) && e.Time.After(oldest) {
					young[e.Seq] = true
					sum = sum.Add(e.Amount.Decimal())
				}
			}
			from = es[len(es)-1].Seq + 1
		}
		d.Pending += len(young)
		for s := r.From; s <= r.To; s++ {
			if young[s] {
				continue
			}
			if n := len(keep); n > 0 && keep[n-1].To == s-1 {
				keep[n-1].To = s
			} else {
				keep = append(keep, SeqRange{s, s})
			}
		}
	}
	d.Missing = keep
	return sum, nil
}

// clip drops the sequence numbers from cut on.
func clip(rs []SeqRange, cut int64) []SeqRange {
	var out []SeqRange
	for _, r := range rs {
		if r.From >= cut {
			continue
		}
		r.To = min(r.To, cut-1)
		out = append(out, r)
	}
	return out
}

type entryKey struct {
	kind   string
	amount decimal.Decimal
}

func archiveEntries(ctx context.Context, conn driver.Conn, sub string) (map[int64]entryKey, error) {
	rows, err := conn.Query(ctx, `SELECT seq, toString(kind), amount_micro FROM credit_ledger FINAL WHERE subscription_id = ?`, sub)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %s: read archive entries: %w", sub, err)
	}
	defer rows.Close()
	out := map[int64]entryKey{}
	for rows.Next() {
		var seq uint64
		var k entryKey
		var amount credit.Amount
		if err := rows.Scan(&seq, &k.kind, (*int64)(&amount)); err != nil {
			return nil, fmt.Errorf("reconcile: %s: read archive entries: %w", sub, err)
		}
		k.amount = amount.Decimal()
		out[int64(seq)] = k
	}
	return out, rows.Err()
}

func gaps(have map[int64]entryKey, from, to int64) []SeqRange {
	var out []SeqRange
	for s := from; s <= to; s++ {
		if _, ok := have[s]; ok {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To == s-1 {
			out[n-1].To = s
		} else {
			out = append(out, SeqRange{s, s})
		}
	}
	return out
}

// compareAll walks the whole Redis ledger against the archived entries.
func compareAll(ctx context.Context, store *balance.Store, sub string, have map[int64]entryKey, d *Drift, base int64) error {
	seen := map[int64]bool{}
	missing := map[int64]bool{}
	for from := int64(1); ; {
		es, err := store.Ledger(ctx, sub, from, 1000)
		if err != nil {
			return fmt.Errorf("reconcile: %s: %w", sub, err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			seen[e.Seq] = true
			a, ok := have[e.Seq]
			switch {
			case !ok:
				missing[e.Seq] = true
			case a.kind != e.Kind || !a.amount.Equal(e.Amount.Decimal()):
				d.Mismatched = append(d.Mismatched, e.Seq)
			}
			d.RedisLastSeq = e.Seq
		}
		from = es[len(es)-1].Seq + 1
	}
	for s := range have {
		if !seen[s] && s > base { // up to base only the archive has them (restored account)
			d.Extra = append(d.Extra, s)
		}
	}
	sort.Slice(d.Extra, func(i, j int) bool { return d.Extra[i] < d.Extra[j] })
	m := map[int64]entryKey{}
	for s := range seen {
		if !missing[s] {
			m[s] = entryKey{}
		}
	}
	if len(missing) > 0 {
		d.Missing = gaps(m, base+1, d.RedisLastSeq)
	}
	return nil
}

// repair archives the entries the archive misses, from Redis. It never
// rewrites an archived entry: the archive is the record, and an entry that
// differs from Redis's means Redis lost writes (Repairer fixes Redis).
func repair(ctx context.Context, store *balance.Store, conn driver.Conn, sub, customer string, d *Drift) (int, error) {
	want := map[int64]bool{}
	for _, r := range d.Missing {
		for s := r.From; s <= r.To; s++ {
			want[s] = true
		}
	}
	var rows []archive.LedgerRow
	for from := int64(1); ; {
		es, err := store.Ledger(ctx, sub, from, 1000)
		if err != nil {
			return 0, fmt.Errorf("reconcile: %s: %w", sub, err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if want[e.Seq] {
				rows = append(rows, accounts.LedgerRow(sub, customer, e))
			}
		}
		from = es[len(es)-1].Seq + 1
	}
	if err := archive.NewWriter(conn).WriteLedger(ctx, rows); err != nil {
		return 0, fmt.Errorf("reconcile: %s: repair: %w", sub, err)
	}
	return len(rows), nil
}
