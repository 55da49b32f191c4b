package balance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// BenchmarkDurability is the cost of Redis durability settings for the
// engine's work: each op is one engine-sized Apply (50 subscriptions × 100
// lines, pipelined) on a private redis-server with AOF everysec, AOF always,
// and everysec with one replica and WaitReplicas(1) after each Apply.
// Run: go test -bench Durability -run '^$' -benchtime 100x ./balance/
func BenchmarkDurability(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"everysec", "always", "everysec+wait1"} {
		b.Run(mode, func(b *testing.B) {
			fsync := strings.TrimSuffix(mode, "+wait1")
			master := testenv.StartRedis(b, "--appendfsync", fsync)
			wait := strings.HasSuffix(mode, "+wait1")
			if wait {
				testenv.StartRedis(b, "--replicaof", "127.0.0.1", strings.TrimPrefix(master.Addr, "127.0.0.1:"))
			}
			rc := master.Client()
			s, err := New(rc, Options{Prefix: "b:"})
			if err != nil {
				b.Fatal(err)
			}
			const subs, lines = 50, 100
			for i := 0; i < subs; i++ {
				sub := fmt.Sprintf("s%d", i)
				if _, err := s.OpenAccount(ctx, AccountSpec{Subscription: sub, Customer: "c", Policy: Overage, Currency: "USD"}); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Grant(ctx, GrantRequest{Key: "g", Subscription: sub, Type: Purchased, Amount: credit.MaxAmount / 2}); err != nil {
					b.Fatal(err)
				}
			}
			if wait {
				for deadline := time.Now().Add(10 * time.Second); s.WaitReplicas(ctx, 1, 100*time.Millisecond) != nil; {
					if time.Now().After(deadline) {
						b.Fatal("the replica never caught up")
					}
				}
			}
			batches := make([]Batch, subs)
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; n++ {
				for i := range batches {
					bt := Batch{Subscription: fmt.Sprintf("s%d", i), Topic: "t", Partition: 0}
					for j := 0; j < lines; j++ {
						off := int64(n*lines + j)
						bt.Lines = append(bt.Lines, Line{EventID: fmt.Sprintf("e-%d-%d-%d", i, n, j), Offset: off, Time: time.Now(), Credits: 1000})
					}
					batches[i] = bt
				}
				if _, err := s.Apply(ctx, batches); err != nil {
					b.Fatal(err)
				}
				if wait {
					if err := s.WaitReplicas(ctx, 1, time.Second); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*subs*lines)/time.Since(start).Seconds(), "events/s")
		})
	}
}
