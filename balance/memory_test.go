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
func keyBytes(t *testing.T, rc redis.UniversalClient, pattern string) (bytes int64, keys int) {
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

func usedMemory(t *testing.T, rc redis.UniversalClient) int64 {
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
	ledger, _ := keyBytes(t, e.rc, e.s.keys(sub).Ledger)
	t.Logf("subscription without dedupe sets: %d keys, %d bytes, of which ledger %d bytes for %d entries", allKeys-bothKeys, all-both, ledger, len(e.ledger(sub)))
}

// TestSubscriptionMemory reports the memory of a typical subscription:
// account, a few grants, watermarks of 2 partitions, idempotency keys, and
// the ledger per entry; the dedupe sets are measured above.
func TestSubscriptionMemory(t *testing.T) {
	e := newEnv(t, 0)
	sub := "sub-3f0c6a1e-8a8e-4d0b-9e55-2c1f5d3a7b10"
	e.open(sub, Overage, func(a *AccountSpec) { a.LowThreshold, a.TopUpMin, a.TopUpMax = c(50), c(250), c(8000) })
	e.grant(sub, "included", Promotional, c(100), time.Time{}, t0.Add(720*time.Hour))
	for i := 0; i < 2; i++ {
		if _, err := e.s.TopUp(e.ctx, TopUpRequest{Key: fmt.Sprint("topup-", i), Subscription: sub, Amount: c(500)}); err != nil {
			t.Fatal(err)
		}
	}
	const calls = 1000
	for i := 0; i < calls; i++ {
		b := batch(sub, int32(i%2))
		b.Committed = int64(i * 10) // earlier calls were committed: their journal records go
		for j := 0; j < 10; j++ {
			b.Lines = append(b.Lines, line(fmt.Sprint("e-", i, "-", j), int64(i*10+j), e.clock.Now(), credit.MustParse("0.1")))
		}
		e.apply(b)
	}
	all, keys := keyBytes(t, e.rc, e.pfx+"{"+sub+"}:*")
	dd, ddKeys := keyBytes(t, e.rc, e.s.ddPrefix(sub)+"*")
	ledger, _ := keyBytes(t, e.rc, e.s.keys(sub).Ledger)
	n := len(e.checkLedger(sub))
	base := all - dd - ledger
	t.Logf("subscription: %d keys besides %d dedupe sets; %d bytes without ledger and dedupe sets; ledger %d entries, %.1f bytes/entry",
		keys-ddKeys-1, ddKeys, base, n, float64(ledger)/float64(n))
	if base > 4096 {
		t.Errorf("subscription state %d bytes, expected under 4 KiB", base)
	}
}
