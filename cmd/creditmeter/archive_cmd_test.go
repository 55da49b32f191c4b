package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
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

// A period outside the archive's DateTime range is refused before any
// query, as the API refuses it: not a ClickHouse parse error (9999-12), nor
// an invoice of 1900-01 showing today's balance as its opening balance.
func TestInvoicePeriodOutOfRange(t *testing.T) {
	for _, p := range []string{"9999-12", "1900-01", "1969-12", "2106-01", "0000-01"} {
		out, err := run(t, nil, "invoice", "--subscription", "s", "--period", p, "--clickhouse-addr", "127.0.0.1:1")
		if err == nil || !strings.Contains(out, "--period") || !strings.Contains(out, "1970-01 to 2105-12") {
			t.Errorf("invoice --period %s: %v\n%s", p, err, out)
		}
	}
}

// reconcile exits non-zero on drift and names it; --repair fixes it.
func TestReconcileCommand(t *testing.T) {
	st := apptest.Stores(t)
	conn, cc, prefix, store := st.Conn, st.CC, st.Prefix, st.Balances
	ctx := context.Background()
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
	if err := archive.NewWriter(conn).WriteLedger(ctx, []archive.LedgerRow{accounts.LedgerRow("s1", "c1", es[0])}); err != nil {
		t.Fatal(err)
	}
	env := []string{"CREDITMETER_CLICKHOUSE_DATABASE=" + cc.Database, "CREDITMETER_CLICKHOUSE_ADDR=" + cc.Addr, "CREDITMETER_REDIS_ADDR=" + testenv.Config(t).Redis.Addr}
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

// archivingLedger opens balance accounts and archives their ledger entries,
// as the engine does.
type archivingLedger struct {
	store *balance.Store
	w     *archive.Writer
}

func (l archivingLedger) OpenSubscription(ctx context.Context, t rating.AccountTerms, g *rating.Grant) error {
	if _, err := l.store.OpenAccount(ctx, balance.AccountSpec{Subscription: t.SubscriptionID, Customer: t.CustomerID,
		Policy: balance.Overage, Currency: t.Currency, CreditValue: t.CreditValue}); err != nil {
		return err
	}
	res, err := l.store.Grant(ctx, balance.GrantRequest{Key: "included", Subscription: t.SubscriptionID, Type: balance.GrantType(g.Type),
		Amount: g.Amount, CostBasis: g.CostBasis.Amount, Charge: g.Charge.Amount, Currency: g.Charge.Currency, Reason: "included credits"})
	if err != nil {
		return err
	}
	es, err := l.store.Ledger(ctx, t.SubscriptionID, res.Seq, 1)
	if err != nil {
		return err
	}
	return l.w.WriteLedger(ctx, []archive.LedgerRow{accounts.LedgerRow(t.SubscriptionID, t.CustomerID, es[0])})
}

// invoice prices with the catalog's terms: 100 purchased included credits
// and a 250-credit top-up at the subscription's 0.04 USD.
func TestInvoiceCommand(t *testing.T) {
	st := apptest.Stores(t)
	conn, cc, prefix, store, cat := st.Conn, st.CC, st.Prefix, st.Balances, st.Catalog
	ctx := context.Background()
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	w := archive.NewWriter(conn)
	sub, err := seed.Subscribe(ctx, cat, archivingLedger{store, w}, seed.Subscription{Customer: "acme", Plan: seed.PlanOverage,
		Included: "100", GrantType: "purchased", CreditValue: "0.04"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.Credits(250)})
	if err != nil {
		t.Fatal(err)
	}
	es, err := store.Ledger(ctx, sub, res.Seq, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteLedger(ctx, []archive.LedgerRow{accounts.LedgerRow(sub, "acme", es[0])}); err != nil {
		t.Fatal(err)
	}
	env := []string{"CREDITMETER_CLICKHOUSE_DATABASE=" + cc.Database, "CREDITMETER_CLICKHOUSE_ADDR=" + cc.Addr, "CREDITMETER_REDIS_ADDR=" + testenv.Config(t).Redis.Addr}
	period := time.Now().UTC().Format("2006-01")
	args := []string{"invoice", "--subscription", sub, "--period", period, "--redis-key-prefix", prefix}
	out, err := run(t, env, args...)
	if err != nil {
		t.Fatalf("invoice: %v\n%s", err, out)
	}
	var inv archive.Invoice
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	d := decimal.RequireFromString
	if !inv.TotalDue.Equal(d("14")) || !inv.TopUps.Equal(d("10")) || !inv.PurchasedGrants.Equal(d("4")) || inv.Currency != "USD" ||
		inv.CreditCurrency != "AIT" || !inv.ClosingBalance.Equal(d("350")) {
		t.Fatalf("invoice:\n%s", out)
	}
	out, err = run(t, env, append(args, "--format", "csv")...)
	if err != nil || !strings.Contains(out, sub+","+period+",total_due,Total due,,,,0,AIT,0,14,USD,true,") {
		t.Fatalf("csv: %v\n%s", err, out)
	}
	if out, err = run(t, env, "invoice", "--subscription", "nobody", "--period", period, "--redis-key-prefix", prefix); err == nil || !strings.Contains(out, "nobody") {
		t.Fatalf("unknown subscription: %v\n%s", err, out)
	}
}

// reconcile --rebuild restores an account Redis lost, from the archive and
// the catalog, after which nothing drifts.
func TestReconcileRebuildsLostAccount(t *testing.T) {
	st := apptest.Stores(t)
	rc, cc, prefix, cat, store, acc := st.RC, st.CC, st.Prefix, st.Catalog, st.Balances, st.Accounts
	ctx := context.Background()
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	sub, err := seed.Subscribe(ctx, cat, acc, seed.Subscription{Customer: "lost", Plan: seed.PlanUnfunded, Included: "100", CreditValue: "0.04"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acc.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.Credits(300)}, "lost"); err != nil {
		t.Fatal(err)
	}
	before, err := store.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := testenv.Keys(ctx, rc, prefix+"{"+sub+"}*")
	rc.Del(ctx, keys...)

	env := []string{"CREDITMETER_CLICKHOUSE_DATABASE=" + cc.Database, "CREDITMETER_CLICKHOUSE_ADDR=" + cc.Addr, "CREDITMETER_REDIS_ADDR=" + testenv.Config(t).Redis.Addr}
	args := []string{"reconcile", "--subscription", sub, "--redis-key-prefix", prefix, "--lag", "0s"}
	if out, err := run(t, env, args...); err == nil || !strings.Contains(out, "redis lost the account") {
		t.Fatalf("lost account not reported: %v\n%s", err, out)
	}
	out, err := run(t, env, append(args, "--rebuild")...)
	if err != nil || !strings.Contains(out, sub+": rebuilt from the archive: balance 400, ledger continues after seq 2") || !strings.Contains(out, "0 with drift") {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	after, err := store.Balance(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if after.Total != before.Total || len(after.Grants) != len(before.Grants) || after.Policy != before.Policy {
		t.Fatalf("rebuilt %+v\nlost %+v", after, before)
	}
	// Life goes on: a new top-up is archived and the deep check is clean.
	if _, err := acc.TopUp(ctx, balance.TopUpRequest{Key: "t2", Subscription: sub, Amount: credit.Credits(250)}, "lost"); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, env, append(args, "--deep")...); err != nil || !strings.Contains(out, "0 with drift") {
		t.Fatalf("after rebuild and a top-up: %v\n%s", err, out)
	}
}
