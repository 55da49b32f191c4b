package archive_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// benchRows is one engine-like batch: rated lines of 200 subscriptions,
// one or two grants each, amounts with micro-credit fractions.
func benchRows(n int) []archive.RatedRow {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	value := decimal.RequireFromString("0.04")
	rows := make([]archive.RatedRow, n)
	for i := range rows {
		c := credit.Amount(1_234_567 + i)
		r := archive.RatedRow{
			EventID: fmt.Sprintf("ev-%08d", i), CustomerID: fmt.Sprintf("cust-%d", i%200), SubscriptionID: fmt.Sprintf("sub-%d", i%200),
			Feature: "llm-tokens", EventName: "llm.completion", Quantity: decimal.NewFromInt(int64(1000 + i%500)),
			Credits: c, Funded: c, CreditCurrency: "AIT", MoneyValue: c.Decimal().Mul(value), MoneyCurrency: "USD",
			EventTime: at.Add(time.Duration(i) * time.Millisecond), RatedAt: at, GrantIDs: []string{"incl-1"}, GrantAmounts: []credit.Amount{c},
			Status: archive.StatusApplied, Topic: "usage-events", Partition: int32(i % 8), Offset: int64(i),
		}
		if i%3 == 0 {
			r.GrantIDs, r.GrantAmounts = []string{"incl-1", "promo-1"}, []credit.Amount{c / 2, c - c/2}
		}
		rows[i] = r
	}
	return rows
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteUsage inserts batches of 2,000 rated lines into the real
// ClickHouse. One op is one batch; rows/s is wall clock (server included),
// go-cpu-ns/row the benchmark process's own CPU time per row.
func BenchmarkWriteUsage(b *testing.B) {
	conn, cc := testenv.ClickHouse(b)
	ctx := context.Background()
	if err := archive.Migrate(ctx, cc); err != nil {
		b.Fatal(err)
	}
	w := archive.NewWriter(conn)
	const batch = 2000
	rows := benchRows(batch)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		if err := w.WriteUsage(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n := float64(b.N * batch)
	b.ReportMetric(n/time.Since(t0).Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/n, "go-cpu-ns/row")
}
