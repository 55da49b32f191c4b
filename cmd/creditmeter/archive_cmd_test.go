package main

import (
	"context"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/reconcile"
	"github.com/shopspring/decimal"
)

func TestInvoiceAndReconcileHelp(t *testing.T) {
	for _, sub := range []string{"invoice", "reconcile"} {
		out, err := run(t, nil, sub, "--help")
		if err != nil {
			t.Fatalf("%s --help: %v\n%s", sub, err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "--") && !strings.HasPrefix(line, "-h, --help") && !strings.Contains(line, "$CREDITMETER_") {
				t.Errorf("%s --help: flag line without its variable: %q", sub, line)
			}
		}
	}
	for _, args := range [][]string{
		{"invoice", "--period", "2026-11"},
		{"invoice", "--subscription", "s", "--period", "2026-13"},
		{"invoice", "--subscription", "s", "--period", "2026-11", "--format", "xml"},
	} {
		if out, err := run(t, nil, args...); err == nil {
			t.Errorf("%v: want an error, got\n%s", args, out)
		}
	}
}

// reconcile exits non-zero on drift and names it; --repair fixes it.
func TestReconcileCommand(t *testing.T) {
	conn, cc := testenv.ClickHouse(t)
	rc := testenv.Redis(t)
	prefix := testenv.Prefix(t)
	ctx := context.Background()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	store, err := balance.New(rc, balance.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenAccount(ctx, balance.AccountSpec{Subscription: "s1", Customer: "c1", Policy: balance.Unfunded, Currency: "USD", CreditValue: decimal.NewFromInt(1)}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := store.Grant(ctx, balance.GrantRequest{Key: k, Subscription: "s1", Type: balance.Promotional, Amount: credit.Credits(10)}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := store.Ledger(ctx, "s1", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.NewWriter(conn).WriteLedger(ctx, []archive.LedgerRow{reconcile.EntryRow("s1", "c1", es[0])}); err != nil {
		t.Fatal(err)
	}
	env := []string{"CREDITMETER_CLICKHOUSE_DATABASE=" + cc.Database, "CREDITMETER_CLICKHOUSE_ADDR=" + cc.Addr, "CREDITMETER_REDIS_ADDR=" + rc.Options().Addr}
	args := []string{"reconcile", "--subscription", "s1", "--redis-key-prefix", prefix, "--lag", "0s"}
	out, err := run(t, env, args...)
	if err == nil || !strings.Contains(out, "s1: redis total 20, archive sum 10, difference at the archive's last entry 0") || !strings.Contains(out, "missing seqs [{2 2}]") {
		t.Fatalf("drift: err %v\n%s", err, out)
	}
	if out, err = run(t, env, append(args, "--repair")...); err != nil || !strings.Contains(out, "repaired 1 entries") || !strings.Contains(out, "0 with drift") {
		t.Fatalf("repair: err %v\n%s", err, out)
	}
	if out, err = run(t, env, append(args, "--deep")...); err != nil || !strings.Contains(out, "0 with drift") {
		t.Fatalf("after repair: err %v\n%s", err, out)
	}
}
