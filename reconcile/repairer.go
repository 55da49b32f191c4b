package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
)

// Repairer finds subscriptions whose Redis state lost acknowledged writes
// (a restart from an older AOF, a failover to a lagging replica, a
// replaced server) by comparing Redis's ledger with the archive's, and
// repairs them from the archive (balance.Store.Repair). The archive is the
// record: it is only read.
type Repairer struct {
	Store *balance.Store
	Conn  driver.Conn
	// DedupeWindow of the store: ids of events rated within two windows are
	// remembered again (default 1h).
	DedupeWindow time.Duration
	Now          func() time.Time
}

// Stale lists the subscriptions whose Redis ledger does not hold the
// archive's last entry as archived: their Redis state is behind the
// archive, or went on from a state that lost writes.
func (r *Repairer) Stale(ctx context.Context) ([]string, error) {
	heads, err := archive.LedgerHeads(ctx, r.Conn)
	if err != nil {
		return nil, err
	}
	subs := make([]string, 0, len(heads))
	for s := range heads {
		subs = append(subs, s)
	}
	sort.Strings(subs)
	at := make([]int64, len(subs))
	for i, s := range subs {
		at[i] = int64(heads[s].Seq)
	}
	hs, err := r.Store.Heads(ctx, subs, at)
	if err != nil {
		return nil, err
	}
	var stale []string
	for i, s := range subs {
		if !agrees(s, hs[i].Entry, heads[s]) {
			stale = append(stale, s)
		}
	}
	return stale, nil
}

func agrees(sub string, e *balance.Entry, h archive.LedgerHead) bool {
	return e != nil && accounts.LedgerRow(sub, "", *e).Head().Same(h)
}

// Repair repairs sub if its Redis ledger disagrees with the archive's and
// returns Redis's ledger seq after it, and whether it repaired.
func (r *Repairer) Repair(ctx context.Context, sub string) (int64, bool, error) {
	fail := func(what string, err error) (int64, bool, error) {
		return 0, false, fmt.Errorf("reconcile: repair %s: %s: %w", sub, what, err)
	}
	heads, err := archive.LedgerHeads(ctx, r.Conn, sub)
	if err != nil {
		return fail("archive", err)
	}
	head, ok := heads[sub]
	if !ok {
		hs, err := r.Store.Heads(ctx, []string{sub}, []int64{0})
		if err != nil {
			return fail("redis", err)
		}
		return hs[0].Seq, false, nil
	}
	hs, err := r.Store.Heads(ctx, []string{sub}, []int64{int64(head.Seq)})
	if err != nil {
		return fail("redis", err)
	}
	found := hs[0].Seq
	if agrees(sub, hs[0].Entry, head) {
		return found, false, nil
	}
	// keep: the last seq up to which Redis holds the archive's entries.
	// Losses are recent: look at the last 1,000 entries first.
	top := min(found, int64(head.Seq))
	var arch []archive.LedgerRow
	var keep int64
	for lo := max(1, top-1000); ; lo = 1 {
		if arch, err = archive.LedgerEntries(ctx, r.Conn, sub, uint64(lo)); err != nil {
			return fail("archive", err)
		}
		if keep, err = r.agreeUpTo(ctx, sub, arch, lo, top); err != nil {
			return fail("redis ledger", err)
		}
		if keep >= lo || lo == 1 {
			break
		}
	}
	spec := balance.RepairSpec{Subscription: sub, Found: found, Keep: keep}
	for _, a := range arch {
		if int64(a.Seq) > keep {
			spec.Entries = append(spec.Entries, entryOf(a))
		}
	}
	if len(spec.Entries) == 0 {
		return found, false, nil
	}
	window := r.DedupeWindow
	if window <= 0 {
		window = time.Hour
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	since := spec.Entries[0].Time.Add(-time.Minute)
	if floor := now().Add(-2 * window); since.Before(floor) {
		since = floor
	}
	// Events the snapshot's watermarks cover were charged in the archived
	// ledger: remembered for producer duplicates. Those past them (applied
	// on the lost state, or archived without their ledger entry) are
	// forgotten: Kafka replays them and they must count then.
	var snap struct {
		W map[string]string `json:"w"`
	}
	if err := json.Unmarshal([]byte(spec.Entries[len(spec.Entries)-1].Snapshot), &snap); err != nil {
		return fail("snapshot", err)
	}
	evs, err := archive.RatedEventsSince(ctx, r.Conn, sub, since)
	if err != nil {
		return fail("event ids", err)
	}
	covered := func(topic string, partition int32, offset int64) bool {
		wm, err := strconv.ParseInt(snap.W[fmt.Sprintf("%s/%d", topic, partition)], 10, 64)
		return topic == "" || err == nil && offset <= wm
	}
	for _, ev := range evs {
		if covered(ev.Topic, ev.Partition, ev.Offset) {
			spec.EventIDs = append(spec.EventIDs, ev.ID)
		} else {
			spec.ForgetIDs = append(spec.ForgetIDs, ev.ID)
		}
	}
	// UNIQUE_COUNT sets of the periods still remembered, split the same way
	us, err := archive.UniqueCounts(ctx, r.Conn, sub, now().Add(-balance.UniqueKeep))
	if err != nil {
		return fail("unique values", err)
	}
	spec.Unique = uniqueSets(us, covered)
	res, err := r.Store.Repair(ctx, spec)
	if err != nil {
		return fail("redis", err)
	}
	return res.Seq, true, nil
}

// agreeUpTo returns the last seq in lo..top up to which Redis's entries
// are the archive's (lo-1 when the first differs).
func (r *Repairer) agreeUpTo(ctx context.Context, sub string, arch []archive.LedgerRow, lo, top int64) (int64, error) {
	red := map[int64]balance.Entry{}
	for from := lo; from <= top; {
		es, err := r.Store.Ledger(ctx, sub, from, 1000)
		if err != nil {
			return 0, err
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			red[e.Seq] = e
		}
		from = es[len(es)-1].Seq + 1
	}
	keep := lo - 1
	for _, a := range arch {
		if int64(a.Seq) > top {
			break
		}
		e, ok := red[int64(a.Seq)]
		if !ok || !accounts.LedgerRow(sub, "", e).Head().Same(a.Head()) {
			break
		}
		keep = int64(a.Seq)
	}
	return keep, nil
}

// entryOf is the balance ledger entry of an archived row.
func entryOf(a archive.LedgerRow) balance.Entry {
	e := balance.Entry{Seq: int64(a.Seq), Kind: a.Kind, Amount: a.Amount, Balance: a.BalanceAfter, Time: a.CreatedAt,
		Grant: a.GrantID, Events: int64(a.EventCount), Snapshot: a.Snapshot, Fields: map[string]string{}}
	for k, v := range map[string]string{"type": a.GrantType, "reason": a.Reason, "actor": a.Actor, "key": a.IdempotencyKey,
		"currency": a.MoneyCurrency} {
		if v != "" {
			e.Fields[k] = v
		}
	}
	if !a.MoneyAmount.IsZero() {
		e.Fields["charge"] = a.MoneyAmount.String()
	}
	return e
}

// uniqueSets groups the archive's UNIQUE_COUNT values by set: those of
// events the snapshot covers are counted; those only events past it
// counted are forgotten.
func uniqueSets(us []archive.UniqueCount, covered func(string, int32, int64) bool) []balance.UniqueSet {
	type key struct {
		meter  string
		period int64
	}
	at := map[key]int{}
	var sets []balance.UniqueSet
	counted := map[key]map[string]bool{}
	forget := map[key]map[string]bool{}
	for _, u := range us {
		k := key{u.Feature, u.Period.UnixMilli()}
		if _, ok := at[k]; !ok {
			at[k] = len(sets)
			sets = append(sets, balance.UniqueSet{Meter: u.Feature, Period: u.Period, PeriodEnd: u.PeriodEnd})
			counted[k], forget[k] = map[string]bool{}, map[string]bool{}
		}
		if covered(u.Topic, u.Partition, u.Offset) {
			counted[k][u.Value] = true
		} else {
			forget[k][u.Value] = true
		}
	}
	for k, i := range at {
		for v := range counted[k] {
			sets[i].Counted = append(sets[i].Counted, v)
		}
		for v := range forget[k] {
			if !counted[k][v] {
				sets[i].Forget = append(sets[i].Forget, v)
			}
		}
		sort.Strings(sets[i].Counted)
		sort.Strings(sets[i].Forget)
	}
	return sets
}
