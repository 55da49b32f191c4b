package balance

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// naiveScript is the baseline: one Lua call per event, dedupe by one
// SET NX key per event id, a plain balance counter and the watermark.
var naiveScript = redis.NewScript(`
local off = tonumber(ARGV[2])
local wm = tonumber(redis.call('HGET', KEYS[2], 'p') or '-1')
if off <= wm then return 0 end
redis.call('HSET', KEYS[2], 'p', ARGV[2])
if not redis.call('SET', KEYS[3] .. ARGV[1], '1', 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'bal', '-' .. ARGV[3])
return 1
`)

func benchStore(b *testing.B) (*Store, *redis.Client, string) {
	rc := testenv.Redis(b)
	pfx := testenv.Prefix(b)
	b.Cleanup(func() { cleanup(rc, pfx) })
	s, err := New(rc, Options{Prefix: pfx})
	if err != nil {
		b.Fatal(err)
	}
	return s, rc, pfx
}

// BenchmarkApply measures events/s of the batch script at several batch
// sizes beside the naive one-call-per-event baseline; one op is one event.
// Run: go test -bench . -run '^$' ./balance/
func BenchmarkApply(b *testing.B) {
	ctx := context.Background()
	b.Run("naive-per-event", func(b *testing.B) {
		_, rc, pfx := benchStore(b)
		keys := []string{pfx + "{naive}:a", pfx + "{naive}:w", pfx + "{naive}:e:"}
		rc.HSet(ctx, keys[0], "bal", int64(credit.MaxAmount))
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if err := naiveScript.Run(ctx, rc, keys, fmt.Sprintf("evt-%d-5f1c0a2e", i), i, 1000, 3600000).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	for _, size := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("batch-%d", size), func(b *testing.B) {
			s, _, _ := benchStore(b)
			sub := "bench"
			if _, err := s.OpenAccount(ctx, AccountSpec{Subscription: sub, Customer: "c", Policy: Overage, Currency: "USD"}); err != nil {
				b.Fatal(err)
			}
			for _, g := range []struct {
				t GrantType
				e time.Time
			}{{Promotional, time.Now().Add(24 * time.Hour)}, {Purchased, time.Time{}}, {Adjustment, time.Time{}}} {
				if _, err := s.Grant(ctx, GrantRequest{Key: string(g.t), Subscription: sub, Type: g.t, Amount: credit.MaxAmount / 4, ExpiresAt: g.e}); err != nil {
					b.Fatal(err)
				}
			}
			lines := make([]Line, size)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += size {
				n := min(size, b.N-i)
				now := time.Now()
				for j := 0; j < n; j++ {
					lines[j] = Line{EventID: fmt.Sprintf("evt-%d-5f1c0a2e", i+j), Offset: int64(i + j), Time: now, Credits: 1000}
				}
				if _, err := s.Apply(ctx, []Batch{{Subscription: sub, Topic: "usage-events", Partition: 0, Lines: lines[:n]}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkApplyLiveGrants measures one Apply call of 100 lines against a
// subscription holding N live grants: the cost the grant cap bounds (every
// script loads and sorts them all). One op is one call.
// Run: go test -bench ApplyLiveGrants -run '^$' ./balance/
func BenchmarkApplyLiveGrants(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{3, DefaultMaxGrants, 2000} {
		b.Run(fmt.Sprintf("grants-%d", n), func(b *testing.B) {
			s, _, _ := benchStore(b)
			s.grants = n
			sub := "grants"
			if _, err := s.OpenAccount(ctx, AccountSpec{Subscription: sub, Customer: "c", Policy: Overage, Currency: "USD"}); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if _, err := s.Grant(ctx, GrantRequest{Key: fmt.Sprint("g", i), Subscription: sub, Type: Purchased, Amount: credit.MaxAmount / 4000}); err != nil {
					b.Fatal(err)
				}
			}
			lines := make([]Line, 100)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now := time.Now()
				for j := range lines {
					lines[j] = Line{EventID: fmt.Sprintf("evt-%d-%d", i, j), Offset: int64(i*len(lines) + j), Time: now, Credits: 1}
				}
				if _, err := s.Apply(ctx, []Batch{{Subscription: sub, Topic: "usage-events", Partition: 0, Lines: lines}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyUnique measures batches of 100 lines without and with one
// UNIQUE_COUNT part each (values from a pool of 1,000 users, so most are
// repeats after the first calls); one op is one event.
// Run: go test -bench ApplyUnique -run '^$' ./balance/
func BenchmarkApplyUnique(b *testing.B) {
	ctx := context.Background()
	for _, unique := range []bool{false, true} {
		b.Run(fmt.Sprintf("unique-%v", unique), func(b *testing.B) {
			s, _, _ := benchStore(b)
			sub := "uniq"
			if _, err := s.OpenAccount(ctx, AccountSpec{Subscription: sub, Customer: "c", Policy: Overage, Currency: "USD"}); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Grant(ctx, GrantRequest{Key: "g", Subscription: sub, Type: Purchased, Amount: credit.MaxAmount / 4}); err != nil {
				b.Fatal(err)
			}
			period := time.Now().Add(-time.Hour)
			lines := make([]Line, 100)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += len(lines) {
				n := min(len(lines), b.N-i)
				now := time.Now()
				for j := 0; j < n; j++ {
					lines[j] = Line{EventID: fmt.Sprintf("evt-%d-5f1c0a2e", i+j), Offset: int64(i + j), Time: now, Credits: 1000}
					if unique {
						lines[j].Unique = []UniquePart{{Meter: "users", Period: period, PeriodEnd: period.AddDate(0, 1, 0), Value: fmt.Sprintf("user-%04d", (i+j)%1000), Credits: 1000}}
					}
				}
				if _, err := s.Apply(ctx, []Batch{{Subscription: sub, Topic: "usage-events", Partition: 0, Lines: lines[:n]}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkApplyMany is the engine's shape: batches of 10,000 events over
// 500 subscriptions (Zipf), one Lua call per subscription, pipelined; one
// op is one event. redis-µs/event is the server's CPU (INFO cpu) per
// event: on a shared server other clients count too, so point
// CREDITMETER_REDIS_ADDR at a private one to compare.
// Run: go test -bench ApplyMany -run '^$' -benchtime 200000x ./balance/
func BenchmarkApplyMany(b *testing.B) {
	ctx := context.Background()
	s, rc, _ := benchStore(b)
	const subs, per = 500, 10000
	for i := 0; i < subs; i++ {
		sub := fmt.Sprint("many", i)
		if _, err := s.OpenAccount(ctx, AccountSpec{Subscription: sub, Customer: sub, Policy: Overage, Currency: "USD"}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Grant(ctx, GrantRequest{Key: "g", Subscription: sub, Type: Purchased, Amount: credit.MaxAmount / 4}); err != nil {
			b.Fatal(err)
		}
	}
	z := rand.NewZipf(rand.New(rand.NewSource(1)), 1.1, 1, subs-1)
	cpu := func() float64 {
		var sum float64
		for _, ln := range strings.Split(rc.Info(ctx, "cpu").Val(), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(ln), ":"); ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
		return sum
	}
	b.ResetTimer()
	c0, start, calls, off := cpu(), time.Now(), 0, map[string]int64{}
	for i := 0; i < b.N; i += per {
		now := time.Now()
		by := map[string][]Line{}
		for j := 0; j < min(per, b.N-i); j++ {
			sub := fmt.Sprint("many", z.Uint64())
			off[sub]++
			by[sub] = append(by[sub], Line{EventID: fmt.Sprintf("evt-%d-5f1c0a2e", i+j), Offset: off[sub], Time: now, Credits: 1000})
		}
		batches := make([]Batch, 0, len(by))
		for sub, ls := range by {
			batches = append(batches, Batch{Subscription: sub, Topic: "usage-events", Partition: 0, Lines: ls})
		}
		calls += len(batches)
		if _, err := s.Apply(ctx, batches); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric((cpu()-c0)*1e6/float64(b.N), "redis-µs/event")
	b.ReportMetric(float64(b.N)/float64(calls), "events/call")
}
