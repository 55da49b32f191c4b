package balance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// countingApply is apply.lua with redis.call wrapped to count the calls on
// dedupe sets ("}:d:" keys); it returns {count, apply.lua's reply}.
func countingApply(t *testing.T) *redis.Script {
	t.Helper()
	src := sources["apply.lua"]
	k := strings.LastIndex(src, "return out")
	if k < 0 {
		t.Fatal("apply.lua has no final return out")
	}
	shim := `local n_dedupe_calls = 0
local redis = setmetatable({call = function(cmd, key, ...)
  if type(key) == 'string' and string.find(key, '}:d:', 1, true) then n_dedupe_calls = n_dedupe_calls + 1 end
  return redis.call(cmd, key, ...)
end}, {__index = redis})
`
	return redis.NewScript(shim + src[:k] + "return {n_dedupe_calls, out}" + src[k+len("return out"):])
}

// applyCounting runs b through countingApply: its result and the number of
// commands on dedupe sets the call made.
func (e *env) applyCounting(sc *redis.Script, b Batch) (BatchResult, int64) {
	e.t.Helper()
	ctx := context.Background()
	now := e.s.nowMs()
	tb := now / e.s.window
	lay, err := e.s.layouts(ctx, []string{b.Subscription}, tb)
	if err != nil {
		e.t.Fatal(err)
	}
	keys, args, _ := e.s.applyArgs(&b, lay[b.Subscription], now, nil)
	v, err := sc.Run(ctx, e.rc, keys, args...).Slice()
	if err != nil || len(v) != 2 {
		e.t.Fatalf("counting apply: %v %v", v, err)
	}
	cmd := redis.NewCmd(ctx)
	cmd.SetVal(v[1])
	return parseApply(b, cmd, tb, e.s), v[0].(int64)
}

// A call looks its ids up and remembers them per dedupe set, not per id:
// at level 0 (one set per time bucket) 100 lines cost a few set commands
// whatever their mix of new ids, ids of an earlier call, ids twice in the
// call and ids of the previous time bucket; the statuses stay exact.
func TestApplyDedupeCommandsPerSet(t *testing.T) {
	e := newEnv(t, 0)
	sc := countingApply(t)
	sub := "ddcalls"
	e.open(sub, Overage)
	e.grant(sub, "grant-1", Purchased, c(100000), t0, time.Time{})
	var first []Line
	for i := 0; i < 40; i++ {
		first = append(first, line(fmt.Sprint("old-", i), int64(i), t0, c(1)))
	}
	r, n := e.applyCounting(sc, batch(sub, 0, first...))
	for i, l := range r.Lines {
		if r.Err != nil || l.Status != Applied {
			t.Fatalf("first call line %d: %+v %v", i, l, r.Err)
		}
	}
	if n > 4 {
		t.Errorf("first call (40 new ids, one set): %d commands on dedupe sets, want at most 4", n)
	}
	// the next time bucket: ids of tb-1 are still remembered
	e.clock.Add(time.Hour)
	off := int64(100)
	var lines []Line
	want := map[int]LineStatus{}
	add := func(id string, st LineStatus) {
		want[len(lines)] = st
		lines = append(lines, line(id, off, t0.Add(time.Hour), c(1)))
		off++
	}
	for i := 0; i < 100; i++ {
		switch {
		case i%5 == 0:
			add(fmt.Sprint("old-", i/5), DuplicateID) // the previous bucket's
		case i%7 == 0:
			add(fmt.Sprint("twice-", i), Applied)
			add(fmt.Sprint("twice-", i), DuplicateID) // again in the same call
		default:
			add(fmt.Sprint("new-", i), Applied)
		}
	}
	r, n = e.applyCounting(sc, batch(sub, 0, lines...))
	if r.Err != nil || len(r.Lines) != len(lines) {
		t.Fatalf("second call: %d lines, %v", len(r.Lines), r.Err)
	}
	for i, l := range r.Lines {
		if l.Status != want[i] {
			t.Errorf("line %d (%s): status %c, want %c", i, lines[i].EventID, l.Status, want[i])
		}
	}
	if n > 6 {
		t.Errorf("second call (%d lines, two sets): %d commands on dedupe sets, want at most 6", len(lines), n)
	}
	// the same ids again in a new call (new offsets): all duplicates
	for i := range lines {
		lines[i].Offset += 1000
	}
	r, _ = e.applyCounting(sc, batch(sub, 0, lines...))
	for i, l := range r.Lines {
		if l.Status != DuplicateID {
			t.Errorf("third call line %d: status %c, want duplicate id", i, l.Status)
		}
	}
	e.checkLedger(sub)
}

// A call of more ids than one SMISMEMBER/SADD takes (DEDUPE_CHUNK) splits
// them and keeps every status exact.
func TestApplyDedupeLargeCall(t *testing.T) {
	e := newEnv(t, 0)
	sub := "ddlarge"
	e.open(sub, Overage)
	e.grant(sub, "grant-1", Purchased, c(100000), t0, time.Time{})
	var first []Line
	for i := 0; i < 1500; i++ {
		first = append(first, line(fmt.Sprint("a-", i), int64(i), t0, c(1)))
	}
	e.apply(batch(sub, 0, first...))
	var lines []Line
	for i := 0; i < 2500; i++ {
		id := fmt.Sprint("b-", i)
		if i%2 == 0 {
			id = fmt.Sprint("a-", i/2) // the first call's (i/2 < 1250)
		}
		lines = append(lines, line(id, int64(2000+i), t0, c(1)))
	}
	lines = append(lines, line("b-1", 5000, t0, c(1))) // twice in the call
	r := e.apply(batch(sub, 0, lines...))[0]
	applied := 0
	for i, l := range r.Lines {
		want := Applied
		if i%2 == 0 || i == len(lines)-1 {
			want = DuplicateID
		}
		if l.Status != want {
			t.Errorf("line %d (%s): status %c, want %c", i, lines[i].EventID, l.Status, want)
		}
		if l.Status == Applied {
			applied++
		}
	}
	if v := e.balance(sub); v.Total != c(100000-1500-int64(applied)) {
		t.Errorf("balance %s, want %s", v.Total, c(100000-1500-int64(applied)))
	}
	e.checkLedger(sub)
}
