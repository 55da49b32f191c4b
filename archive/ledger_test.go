package archive_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// An archived ledger entry is immutable: the same entry again is a no-op,
// another entry with its (subscription, seq) is refused and the first
// stays; a sequence number reused after Redis lost writes never replaces
// what was archived.
func TestLedgerEntriesAreImmutable(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	row := func(sub string, seq uint64, amt int64) archive.LedgerRow {
		return archive.LedgerRow{SubscriptionID: sub, Seq: seq, CustomerID: "c", Kind: archive.KindUsage,
			Amount: credit.Credits(amt), BalanceAfter: credit.Credits(100 + amt), CreatedAt: at, Snapshot: `{"a":{}}`}
	}
	first := []archive.LedgerRow{row("s1", 1, -5), row("s1", 2, -7), row("s2", 1, -1)}
	if err := w.WriteLedger(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteLedger(ctx, first); err != nil {
		t.Fatalf("the same entries again: %v", err)
	}
	count := func() uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM credit_ledger").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 3 {
		t.Fatalf("%d rows after writing the same entries twice, want 3 (a repeat is not inserted)", n)
	}

	// seq 2 of s1 again with other content, beside a new entry: nothing is written.
	err := w.WriteLedger(ctx, []archive.LedgerRow{row("s2", 2, -3), row("s1", 2, -9)})
	var ce *archive.LedgerConflictError
	if !errors.As(err, &ce) || !errors.Is(err, archive.ErrLedgerConflict) {
		t.Fatalf("conflicting entry: %v, want a LedgerConflictError", err)
	}
	if len(ce.Keys) != 1 || ce.Keys[0] != (archive.LedgerKey{SubscriptionID: "s1", Seq: 2}) || ce.Subscriptions()[0] != "s1" {
		t.Fatalf("conflict keys %+v", ce.Keys)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d rows after a refused write, want 3", n)
	}
	// Two copies of one key in one write also conflict.
	if err := w.WriteLedger(ctx, []archive.LedgerRow{row("s3", 1, -1), row("s3", 1, -2)}); !errors.Is(err, archive.ErrLedgerConflict) {
		t.Fatalf("two versions of one entry in a write: %v", err)
	}

	heads, err := archive.LedgerHeads(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if h := heads["s1"]; !h.Same(row("s1", 2, -7).Head()) {
		t.Fatalf("head of s1 %+v, want the first seq 2", h)
	}
	es, err := archive.LedgerEntries(ctx, conn, "s1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Amount != credit.Credits(-7) || es[0].Snapshot != `{"a":{}}` {
		t.Fatalf("entries of s1 from 2: %+v", es)
	}
}
