package main

import (
	"os/exec"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Two serve nodes recharge a subscription; right after each of two
// crossings one node is killed with SIGKILL (the lease holder or not) and
// restarted: each crossing buys exactly one top-up.
func TestServeAutoRechargeOncePerCrossingAcrossKill(t *testing.T) {
	h := e2e.New(t, 1)
	ctx := t.Context()
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "recharge", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Balances.SetAutoRecharge(ctx, sub, &balance.AutoRecharge{Enabled: true, Threshold: credit.Credits(50), Amount: credit.Credits(300)}); err != nil {
		t.Fatal(err)
	}
	serve := func() *serveProc {
		p := &serveProc{t: t, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, "serve", "--engine=false",
			"--http-addr", "127.0.0.1:"+freePort(t), "--metrics-addr", "127.0.0.1:"+freePort(t), "--kafka-brokers", h.Broker.Addr(),
			"--redis-addr", testenv.Config(t).Redis.Addr, "--redis-key-prefix", h.Prefix,
			"--clickhouse-addr", h.CC.Addr, "--clickhouse-database", h.CC.Database)
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		return p
	}
	nodes := []*serveProc{serve(), serve()}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := h.RC.Exists(ctx, h.Prefix+"{lease:auto-recharge}").Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node holds the auto-recharge lease:\n%s", nodes[0].out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	topUps := func() int {
		es, err := h.Balances.Ledger(ctx, sub, 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range es {
			if e.Kind == "topup" {
				n++
			}
		}
		return n
	}
	for round, victim := range []int{0, 1} {
		if _, err := h.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "use-" + string(rune('a'+round)), Subscription: sub, Amount: -credit.Credits(map[int]int64{0: 60, 1: 300}[round]),
			Reason: "usage", Actor: "test"}, "recharge"); err != nil {
			t.Fatal(err)
		}
		nodes[victim].kill() // between the crossing and (maybe) its top-up
		nodes[victim] = serve()
		deadline := time.Now().Add(45 * time.Second) // the lease's TTL, then a pass
		for topUps() < round+1 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(6 * time.Second) // another pass of each node: still one
		if n := topUps(); n != round+1 {
			t.Fatalf("crossing %d: %d top-ups in all, want %d\n%s", round+1, n, round+1, nodes[1-victim].out.String())
		}
	}
	if v, err := h.Balances.Balance(ctx, sub); err != nil || v.Total != credit.Credits(340) {
		t.Fatalf("balance %v %v, want 100 - 60 + 300 - 300 + 300 = 340", v.Total, err)
	}
	var rows uint64
	if err := h.Conn.QueryRow(ctx, `SELECT count() FROM credit_ledger FINAL WHERE subscription_id = ? AND kind = 'topup'`, sub).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("%d archived top-ups, want 2 (%v)", rows, err)
	}
}
