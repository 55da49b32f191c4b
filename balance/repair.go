package balance

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Head is what Redis holds of a subscription's ledger: its last seq (-1
// when the account does not exist) and the entry at a seq asked for.
type Head struct {
	Seq   int64
	Entry *Entry // nil when Redis has no entry at the seq asked for
}

// Heads reads, pipelined, each subscription's ledger seq and its entry at
// at[i] (the archive's last seq, say), so a caller can tell whether Redis
// still holds what was archived.
func (s *Store) Heads(ctx context.Context, subs []string, at []int64) ([]Head, error) {
	if len(subs) != len(at) {
		return nil, fmt.Errorf("%w: %d subscriptions, %d seqs", ErrInvalid, len(subs), len(at))
	}
	out := make([]Head, len(subs))
	const chunk = 1000
	for lo := 0; lo < len(subs); lo += chunk {
		hi := min(lo+chunk, len(subs))
		pipe := s.rc.Pipeline()
		seqs := make([]*redis.StringCmd, hi-lo)
		ents := make([]*redis.XMessageSliceCmd, hi-lo)
		for i := lo; i < hi; i++ {
			if err := validSub(subs[i]); err != nil {
				return nil, err
			}
			k := s.keys(subs[i])
			seqs[i-lo] = pipe.HGet(ctx, k.Account, "seq")
			id := strconv.FormatInt(at[i], 10) + "-0"
			ents[i-lo] = pipe.XRange(ctx, k.Ledger, id, id)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, classify(err)
		}
		for i := lo; i < hi; i++ {
			h := Head{Seq: -1}
			if v, err := seqs[i-lo].Result(); err == nil {
				if h.Seq, err = strconv.ParseInt(v, 10, 64); err != nil {
					return nil, fmt.Errorf("%w: seq %q of %s", errUnexpectedScriptData, v, subs[i])
				}
			}
			es, err := entries(ents[i-lo].Val())
			if err != nil {
				return nil, err
			}
			if len(es) == 1 {
				h.Entry = &es[0]
			}
			out[i] = h
		}
	}
	return out, nil
}

// RepairSpec is what the archive knows of a subscription whose Redis state
// lost acknowledged writes (see Store.Repair).
type RepairSpec struct {
	Subscription string
	// Found is the Redis ledger seq the caller saw (-1: no account); the
	// repair is refused with ErrConflict if it moved since.
	Found int64
	// Keep: Redis's entries up to Keep agree with the archive and stay.
	Keep int64
	// Entries are the archive's entries after Keep, in seq order; the last
	// carries the Snapshot the account is rebuilt from.
	Entries []Entry
	// EventIDs are the ids of events applied within the dedupe window
	// (from the archive), remembered again for producer duplicates.
	EventIDs []string
	// ForgetIDs are ids Redis may remember from the lost state (events
	// applied on it): forgotten, so their redelivery counts.
	ForgetIDs []string
	// Unique are the UNIQUE_COUNT sets of the subscription's billing
	// periods not yet past UniqueKeep, from the archive.
	Unique []UniqueSet
}

// UniqueSet is what the archive knows of one UNIQUE_COUNT set (see
// UniquePart): Counted are the values its entries charged, put back;
// Forget those only events past the snapshot (applied on the lost state,
// replayed from Kafka) counted, taken out so that they count again.
type UniqueSet struct {
	Meter             string
	Period, PeriodEnd time.Time
	Counted, Forget   []string
}

// ErrNoSnapshot: the archive's last entry of the subscription carries no
// snapshot (archived before snapshots existed), so Repair cannot rebuild
// it; reconcile --rebuild can, from the archive's history.
var ErrNoSnapshot = fmt.Errorf("%w: the archive's last entry has no snapshot", ErrInvalid)

// Repair brings a subscription whose Redis state lost writes back to the
// archive's truth in one script: Redis's entries after Keep (and the
// idempotency records they wrote) are discarded, the archive's entries are
// put in their place, account, live grants and offset watermarks become
// the snapshot of the last one, journals are dropped, and EventIDs are
// remembered again. Usage after the snapshot is then applied again from
// Kafka, which still holds it: the watermarks say where to resume.
func (s *Store) Repair(ctx context.Context, r RepairSpec) (ChangeResult, error) {
	if err := validSub(r.Subscription); err != nil {
		return ChangeResult{}, err
	}
	if len(r.Entries) == 0 || r.Entries[len(r.Entries)-1].Snapshot == "" {
		return ChangeResult{}, fmt.Errorf("%w (%s)", ErrNoSnapshot, r.Subscription)
	}
	if r.Keep < 0 || r.Entries[0].Seq <= r.Keep {
		return ChangeResult{}, fmt.Errorf("%w: entries from seq %d after keep %d", ErrInvalid, r.Entries[0].Seq, r.Keep)
	}
	last := r.Entries[len(r.Entries)-1]
	var snap struct {
		A map[string]string `json:"a"`
		W map[string]string `json:"w"`
	}
	if err := json.Unmarshal([]byte(last.Snapshot), &snap); err != nil || snap.A["seq"] != strconv.FormatInt(last.Seq, 10) {
		return ChangeResult{}, fmt.Errorf("%w: snapshot of seq %d of %s: %v", ErrInvalid, last.Seq, r.Subscription, err)
	}
	b := s.prefix + "{" + r.Subscription + "}:"
	var entries []any
	prev := r.Keep
	for _, e := range r.Entries {
		if e.Seq <= prev { // gaps are allowed: the archive may miss an entry
			return ChangeResult{}, fmt.Errorf("%w: entry seq %d after %d", ErrInvalid, e.Seq, prev)
		}
		prev = e.Seq
		f := []string{strconv.FormatInt(e.Seq, 10), "k", e.Kind, "a", strconv.FormatInt(int64(e.Amount), 10),
			"b", strconv.FormatInt(int64(e.Balance), 10), "t", strconv.FormatInt(e.Time.UnixMilli(), 10)}
		if e.Grant != "" {
			f = append(f, "g", e.Grant)
		}
		if e.Events > 0 {
			f = append(f, "n", strconv.FormatInt(e.Events, 10))
		}
		if e.Unfunded > 0 {
			f = append(f, "u", strconv.FormatInt(int64(e.Unfunded), 10))
		}
		for k, v := range e.Fields {
			if v != "" {
				f = append(f, k, v)
			}
		}
		if e.Snapshot != "" {
			f = append(f, "s", e.Snapshot)
		}
		js, err := json.Marshal(f)
		if err != nil {
			return ChangeResult{}, err
		}
		entries = append(entries, string(js))
	}
	var ids []any
	var bits []int64
	for _, list := range [][]string{r.EventIDs, r.ForgetIDs} {
		ids = append(ids, len(list))
		for _, id := range list {
			fp, bb := eventFingerprint(id)
			ids = append(ids, fp, bb)
			bits = append(bits, bb)
		}
	}
	now := s.nowMs()
	var sets []UniqueSet
	for _, u := range r.Unique {
		if u.Meter == "" || u.PeriodEnd.Add(UniqueKeep).UnixMilli() <= now {
			continue // expired: unique.lua charges nothing there any more
		}
		sets = append(sets, u)
	}
	if err := s.restoreUnique(ctx, r.Subscription, sets, now); err != nil {
		return ChangeResult{}, err
	}
	// Every key the script touches is declared: the journals of the sources
	// Redis or the snapshot knows, the dedupe sets of the ids and the
	// UNIQUE_COUNT sets (after them, for the Forget values). Another
	// writer may move either on meanwhile: then the script refuses before
	// writing anything (CMLAYOUT) and this looks again.
	var v any
	for attempt := 0; ; attempt++ {
		now := s.nowMs()
		srcs, err := s.rc.HKeys(ctx, s.keys(r.Subscription).Watermarks).Result()
		if err != nil {
			return ChangeResult{}, classify(err)
		}
		for k := range snap.W {
			srcs = append(srcs, k)
		}
		keys := s.keys(r.Subscription).list()
		seen := map[string]bool{}
		for _, src := range srcs {
			if k := s.journalKey(r.Subscription, src); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		nj := len(keys) - subKeyCount
		s.layout.Delete(r.Subscription)
		lay, err := s.layouts(ctx, []string{r.Subscription}, now/s.window)
		if err != nil {
			return ChangeResult{}, err
		}
		l := lay[r.Subscription]
		cur, prevl := l.expect()
		pfx := s.ddPrefix(r.Subscription)
		keys = ddKeys(keys, pfx, l.tb, cur, prevl, bits)
		args := []any{now, s.grace, s.window, pfx, b, r.Found, r.Keep, last.Snapshot, cur, prevl, nj, len(r.Entries)}
		args = append(append(args, entries...), ids...)
		args = append(args, len(sets), len(keys)+1)
		for _, u := range sets {
			keys = append(keys, s.uniqueKey(r.Subscription, u.Meter, u.Period.UnixMilli()))
			args = append(args, len(u.Forget))
			for _, v := range u.Forget {
				args = append(args, v)
			}
		}
		v, err = s.run(ctx, repairScript, keys, args...)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "CMLAYOUT") || attempt == 3 {
			return ChangeResult{}, err
		}
	}
	s.layout.Delete(r.Subscription)
	res, ok := strs(v)
	if !ok || len(res) != 4 {
		return ChangeResult{}, errUnexpectedScriptData
	}
	bal, err := amount(res[0])
	if err != nil {
		return ChangeResult{}, err
	}
	seq, err := strconv.ParseInt(res[3], 10, 64)
	if err != nil {
		return ChangeResult{}, errUnexpectedScriptData
	}
	out := ChangeResult{Seq: seq, Balance: bal, Crossing: LowChange(res[1]), Low: res[2] == "1"}
	s.noteLow(ctx, r.Subscription, out.Crossing)
	return out, nil
}

// Identity names the Redis servers that hold the balances: each master's
// run id and replication id, sorted. It changes when a server restarts,
// fails over or is replaced, which is when acknowledged writes may be lost.
func (s *Store) Identity(ctx context.Context) (string, error) {
	var mu sync.Mutex
	var ids []string
	one := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "server", "replication").Result()
		if err != nil {
			return classify(err)
		}
		var run, repl string
		for _, l := range strings.Split(info, "\n") {
			l = strings.TrimSpace(l)
			if v, ok := strings.CutPrefix(l, "run_id:"); ok {
				run = v
			} else if v, ok := strings.CutPrefix(l, "master_replid:"); ok {
				repl = v
			}
		}
		mu.Lock()
		ids = append(ids, run+"/"+repl)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := s.rc.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, one)
	case *redis.Client:
		err = one(ctx, c)
	default:
		return "", fmt.Errorf("%w: identity of a %T", ErrInvalid, s.rc)
	}
	sort.Strings(ids)
	return strings.Join(ids, ","), classify(err)
}
