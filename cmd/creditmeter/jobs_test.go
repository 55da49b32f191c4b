package main

import (
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Two serve nodes, and an idle subscription whose promotional grant expires:
// the breakage is written once (one node's sweep, under the lease), archived
// once, within a minute of expiry + grace, with nobody calling Expire.
func TestServeSweepsExpiryOncePerDeployment(t *testing.T) {
	h := e2e.New(t, 1)
	ctx := t.Context()
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "sweep", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(2 * time.Second)
	r, err := h.Balances.Grant(ctx, balance.GrantRequest{Key: "promo", Subscription: sub, Type: balance.Promotional,
		Amount: credit.Credits(10), ExpiresAt: expires})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Accounts.Export(ctx, sub, "sweep", r.Seq, r.Seq); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		start(t, "serve", "--engine=false", "--grace-window", "0s",
			"--http-addr", "127.0.0.1:"+freePort(t), "--kafka-brokers", h.Broker.Addr(),
			"--redis-addr", testenv.Config(t).Redis.Addr, "--redis-key-prefix", h.Prefix,
			"--clickhouse-addr", h.CC.Addr, "--clickhouse-database", h.CC.Database)
	}
	var rows uint64
	var at time.Time
	deadline := expires.Add(75 * time.Second)
	for {
		if err := h.Conn.QueryRow(ctx, `SELECT count(), max(created_at) FROM credit_ledger WHERE subscription_id = ? AND kind = 'expiry'`,
			sub).Scan(&rows, &at); err != nil {
			t.Fatal(err)
		}
		if rows > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if rows == 0 {
		t.Fatalf("no breakage archived %s after expiry", time.Since(expires).Round(time.Second))
	}
	if d := at.Sub(expires); d > time.Minute {
		t.Errorf("breakage archived at %s, %s after expiry; want within a minute", at, d)
	}
	time.Sleep(2 * time.Second)
	if err := h.Conn.QueryRow(ctx, `SELECT count() FROM credit_ledger WHERE subscription_id = ? AND kind = 'expiry'`, sub).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d breakage rows (no FINAL), want 1: %v", rows, err)
	}
	if v, err := h.Balances.Balance(ctx, sub); err != nil || v.Total != credit.Credits(100) {
		t.Fatalf("balance %+v %v, want 100", v.Total, err)
	}
	for _, k := range []string{"rollup-refresh", "expiry-sweep", "low-balance"} {
		if n, err := h.RC.Exists(ctx, h.Prefix+"{lease:"+k+"}").Result(); err != nil || n != 1 {
			t.Errorf("lease %s not held: %d %v", k, n, err)
		}
	}
}
