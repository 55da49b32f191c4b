package balance

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/credit"
)

// keyBytes sums MEMORY USAGE (exact, SAMPLES 0) over keys matching pattern.
func keyBytes(t *testing.T, rc *redis.Client, pattern string) (bytes int64, keys int) {
	t.Helper()
	ctx := context.Background()
	iter := rc.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n, err := rc.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		bytes += n
		keys++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return bytes, keys
}

func usedMemory(t *testing.T, rc *redis.Client) int64 {
	s, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory")
	return 0
}

// TestDedupeMemory measures Redis memory per remembered event id. It runs
// 20k ids by default; CREDITMETER_DEDUPE_MEMORY_IDS=1000000 measures more.
// The first window of a new subscription ramps its levels up; the next one
// starts at the right level ("steady").
func TestDedupeMemory(t *testing.T) {
	n := 20000
	if v := os.Getenv("CREDITMETER_DEDUPE_MEMORY_IDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	e := newEnv(t, 0)
	sub := "mem"
	e.open(sub, Unfunded)
	ddPattern := e.s.ddPrefix(sub) + "*"
	// Ids arrive evenly over each window, as a steady stream would.
	run := func(window int) {
		for i := 0; i < n; i += 1000 {
			e.clock.Set(t0.Add(time.Duration(window)*time.Hour + time.Duration(int64(time.Hour)*int64(i)/int64(n))))
			b := Batch{Subscription: sub}
			for j := i; j < min(i+1000, n); j++ {
				b.Lines = append(b.Lines, Line{EventID: fmt.Sprintf("evt-%d-%d-5f1c0a2e", window, j), Time: e.clock.Now(), Credits: credit.Unit})
			}
			e.apply(b)
		}
	}
	before := usedMemory(t, e.rc)
	run(0)
	ramp, rampKeys := keyBytes(t, e.rc, ddPattern)
	rampUsed := usedMemory(t, e.rc) - before
	// Next window: tb moves on, the old bucket's keys are still there (ids
	// are kept between W and 2W), so measure the difference.
	run(1)
	both, bothKeys := keyBytes(t, e.rc, ddPattern)
	steady, steadyKeys := both-ramp, bothKeys-rampKeys
	t.Logf("ids per window %d: ramp-up window %d keys, %.2f B/id by MEMORY USAGE (used_memory delta %.2f B/id incl. ledger); steady window %d keys, %.2f B/id",
		n, rampKeys, float64(ramp)/float64(n), float64(rampUsed)/float64(n), steadyKeys, float64(steady)/float64(n))
	if per := float64(steady) / float64(n); per > 16 {
		t.Errorf("steady state %.2f bytes per id, target <= 16", per)
	}
	if per := float64(ramp) / float64(n); per > 16 {
		t.Errorf("ramp-up %.2f bytes per id, target <= 16", per)
	}
	// Every id of window 1 is a duplicate still.
	b := Batch{Subscription: sub, Lines: []Line{{EventID: "evt-1-0-5f1c0a2e", Time: e.clock.Now(), Credits: 1}, {EventID: "evt-0-7-5f1c0a2e", Time: e.clock.Now(), Credits: 1}}}
	r := e.apply(b)[0]
	if r.Lines[0].Status != DuplicateID || r.Lines[1].Status != DuplicateID {
		t.Fatalf("remembered ids not found: %+v", r.Lines)
	}
	// Per subscription: everything but the dedupe sets.
	all, allKeys := keyBytes(t, e.rc, e.pfx+"{"+sub+"}*")
	ledger, _ := keyBytes(t, e.rc, e.s.keys(sub)[3])
	t.Logf("subscription without dedupe sets: %d keys, %d bytes, of which ledger %d bytes for %d entries", allKeys-bothKeys, all-both, ledger, len(e.ledger(sub)))
}
