package archive_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// A batch insert and select on the real ClickHouse (18.16 in development),
// with the column list given and exact Decimal(38,9) amounts.
func TestBatchInsertAndSelect(t *testing.T) {
	conn, _ := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, `CREATE TABLE smoke (id String, credits Decimal(38, 9), at DateTime) ENGINE = MergeTree ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO smoke (id, credits, at)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	want := decimal.Zero
	for i := 0; i < 1000; i++ {
		c := decimal.New(int64(i), -9).Add(decimal.NewFromInt(1))
		want = want.Add(c)
		if err := batch.Append("ev-"+string(rune('a'+i%26)), c, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	var n uint64
	var sum decimal.Decimal
	if err := conn.QueryRow(ctx, "SELECT count(), sum(credits) FROM smoke").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || !sum.Equal(want) {
		t.Fatalf("got %d rows summing %s, want 1000 summing %s", n, sum, want)
	}
}
