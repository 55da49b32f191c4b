package archive_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// An archive whose rated_usage.quantity is a stored Decimal(38, 9)
// (migrations up to 15) is migrated to quantity_mant/quantity_scale: old
// rows read the same through the quantity name, new rows are written
// without a Decimal, and an old writer's insert of quantity is refused.
func TestQuantityMigrationKeepsDecimalRows(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := archive.MigrateUpTo(ctx, cc, 15); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	old := []string{"1234.5", "0.000000001", "-3", "0", "9223372036.854775807", "10000000000.5", "9223372036854775807", "-92233720368.54775807"}
	b, err := conn.PrepareBatch(ctx, `INSERT INTO rated_usage (event_id, line, subscription_id, quantity, event_time, rated_at, version)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range old {
		if err := b.Append(fmt.Sprintf("old-%d", i), uint16(0), "sub-q", decimal.RequireFromString(q), at, at, uint64(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := archive.Migrate(ctx, cc); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
	}
	rows := usageRows("sub-q", 4, at)
	for i, q := range []string{"2000.001", "0.123456789012", "9223372036854775807", "12000000000"} {
		rows[i].EventID, rows[i].Quantity = fmt.Sprintf("new-%d", i), decimal.RequireFromString(q)
	}
	if err := archive.NewWriter(conn).WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got := queryLines(t, conn, `SELECT event_id, quantity_mant, quantity_scale, toString(quantity) FROM rated_usage FINAL WHERE subscription_id = 'sub-q' ORDER BY event_id`)
	want := []string{
		"new-0 2000001 3 2000.001000000",
		"new-1 123456789012 12 0.123456789",
		"new-2 9223372036854775807 0 9223372036854775807.000000000",
		"new-3 12000000000 0 12000000000.000000000",
		"old-0 1234500000000 9 1234.500000000",
		"old-1 1 9 0.000000001",
		"old-2 -3000000000 9 -3.000000000",
		"old-3 0 9 0.000000000",
		"old-4 9223372036854775807 9 9223372036.854775807",
		"old-5 1000000000050000000 8 10000000000.500000000",
		"old-6 9223372036854775807 0 9223372036854775807.000000000",
		"old-7 -9223372036854775807 8 -92233720368.547758070",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("quantities:\ngot\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	cols := queryLines(t, conn, `SELECT name, type, default_kind FROM system.columns WHERE database = currentDatabase() AND table = 'rated_usage'
		AND name LIKE 'quantity%' ORDER BY name`)
	if strings.Join(cols, ";") != "quantity Decimal(38, 9) ALIAS;quantity_mant Int64 DEFAULT;quantity_scale UInt8 DEFAULT" {
		t.Errorf("columns %q", cols)
	}
	if n := queryLines(t, conn, `SELECT count() FROM system.parts WHERE database = currentDatabase() AND active AND table = 'rated_usage'
		AND name NOT IN (SELECT name FROM system.parts_columns WHERE database = currentDatabase() AND active AND table = 'rated_usage' AND column = 'quantity_mant')`); n[0] != "0" {
		t.Errorf("%s active parts lack quantity_mant", n[0])
	}
	if b, err := conn.PrepareBatch(ctx, `INSERT INTO rated_usage (event_id, line, subscription_id, quantity, event_time, rated_at, version)`); err == nil {
		_ = b.Abort()
		t.Error("an insert of the ALIAS column quantity was accepted")
	}
}
