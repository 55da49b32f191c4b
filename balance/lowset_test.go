package balance

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// lowKeys lists the Redis keys of the low set under the test's prefix.
func (e *env) lowKeys() []string {
	e.t.Helper()
	keys, err := testenv.Keys(e.ctx, e.rc, e.pfx+"*low*")
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// The low set is sharded over sets with their own hash tags (no global key
// written on every crossing), and LowSubscriptions still lists them all, sorted.
func TestLowSetSharded(t *testing.T) {
	e := newEnv(t, 0)
	var want []string
	for i := range 40 {
		sub := fmt.Sprintf("ls-%02d-%s", i, testenv.RandomID(t)[:6])
		e.open(sub, Unfunded, func(a *AccountSpec) { a.LowThreshold = c(10) }) // empty: low
		want = append(want, sub)
	}
	keys := e.lowKeys()
	if len(keys) < 8 || len(keys) > LowShards {
		t.Fatalf("low set keys %v: want the 40 subscriptions spread over up to %d shards", keys, LowShards)
	}
	tags := map[string]bool{}
	for _, k := range keys {
		rest := strings.TrimPrefix(k, e.pfx)
		if !strings.HasPrefix(rest, "{low:") || !strings.HasSuffix(rest, "}") || tags[rest] {
			t.Fatalf("low set key %q: want %s{low:<shard>}", k, e.pfx)
		}
		tags[rest] = true
	}
	got, err := e.s.LowSubscriptions(e.ctx)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("LowSubscriptions = %v, %v\nwant %v", got, err, want)
	}
}

// Reading a balance never writes; a lost crossing update is repaired by
// RepairLow (run by the low-balance collector under its lease).
func TestBalanceReadsDoNotWriteAndRepairLow(t *testing.T) {
	e := newEnv(t, 0)
	low, ok := "rl-low-"+testenv.RandomID(t), "rl-ok-"+testenv.RandomID(t)
	for _, s := range []string{low, ok} {
		e.open(s, Unfunded, func(a *AccountSpec) { a.LowThreshold = c(10) })
	}
	e.grant(ok, "g", Purchased, c(100), t0, t0.AddDate(1, 0, 0))
	if got, _ := e.s.LowSubscriptions(e.ctx); fmt.Sprint(got) != fmt.Sprint([]string{low}) {
		t.Fatalf("low %v", got)
	}
	// Lose both kinds of update: low missing, ok present.
	e.rc.SRem(e.ctx, e.s.lowKey(low), low)
	e.rc.SAdd(e.ctx, e.s.lowKey(ok), ok)
	ghost := "rl-gone-" + testenv.RandomID(t) // no account at all
	e.rc.SAdd(e.ctx, e.s.lowKey(ghost), ghost)
	before := e.lowKeys()
	for _, s := range []string{low, ok} {
		e.balance(s)
	}
	got, _ := e.s.LowSubscriptions(e.ctx)
	want := []string{ghost, ok}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(e.lowKeys()) != fmt.Sprint(before) {
		t.Fatalf("Balance wrote the low set: %v, want it untouched %v", got, want)
	}
	added, removed, err := e.s.RepairLow(e.ctx, []string{low, ok})
	if err != nil || added != 1 || removed != 2 {
		t.Fatalf("repair: +%d -%d %v, want +1 -2", added, removed, err)
	}
	if got, _ := e.s.LowSubscriptions(e.ctx); fmt.Sprint(got) != fmt.Sprint([]string{low}) {
		t.Fatalf("after repair %v", got)
	}
	if added, removed, err := e.s.RepairLow(e.ctx, []string{low, ok}); added+removed != 0 || err != nil {
		t.Fatalf("second repair: +%d -%d %v", added, removed, err)
	}
}
