package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/api"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
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
	// the first node holds the lease before the second starts, so killing
	// it kills the lease holder
	nodes := []*serveProc{serve(), nil}
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
	nodes[1] = serve()
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
	// round 1 kills the lease holder, round 2 both nodes (so whichever
	// holds the lease then), right after the crossing
	for round, victims := range [][]int{{0}, {0, 1}} {
		if _, err := h.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "use-" + string(rune('a'+round)), Subscription: sub, Amount: -credit.Credits(map[int]int64{0: 60, 1: 300}[round]),
			Reason: "usage", Actor: "test"}, "recharge"); err != nil {
			t.Fatal(err)
		}
		for _, v := range victims {
			nodes[v].kill()
		}
		if n := topUps(); n != round {
			t.Logf("crossing %d: the top-up was made before the kill (a pass fell in the few ms between)", round+1)
		}
		for _, v := range victims {
			nodes[v] = serve()
		}
		victim := victims[0]
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

// On a plan requiring payment confirmation, two serve nodes turn each
// crossing into exactly one pending top-up, with the lease holder killed
// (SIGKILL) right after the crossing and again while the top-up waits; the
// payment provider's signed callback makes it credits, and the next
// crossing creates the next pending top-up.
func TestServeAutoRechargePendingAcrossKill(t *testing.T) {
	h := e2e.New(t, 1)
	ctx := t.Context()
	var plan rating.Plan
	if err := json.Unmarshal(fmt.Appendf(nil, seed.PlanJSON, "unfunded"), &plan); err != nil {
		t.Fatal(err)
	}
	plan.ID = "ai-prepaid-confirm"
	plan.Prepaid.Payment = &rating.PaymentTerms{ConfirmationRequired: true, ExpiresIn: "1h"}
	if _, err := h.Catalog.CreatePlan(ctx, &plan); err != nil {
		t.Fatal(err)
	}
	sub, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: "recharge-pay", Plan: plan.ID, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Balances.SetAutoRecharge(ctx, sub, &balance.AutoRecharge{Enabled: true, Threshold: credit.Credits(50), Amount: credit.Credits(300)}); err != nil {
		t.Fatal(err)
	}
	const secret = "provider-shared-secret"
	addrs := map[*serveProc]string{}
	serve := func() *serveProc {
		p := &serveProc{t: t, done: make(chan error, 1)}
		addr := "127.0.0.1:" + freePort(t)
		addrs[p] = addr
		p.cmd = exec.Command(bin, "serve", "--engine=false", "--payment-callback-secret", secret,
			"--http-addr", addr, "--metrics-addr", "127.0.0.1:"+freePort(t), "--kafka-brokers", h.Broker.Addr(),
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
	leaseKey := h.Prefix + "{lease:auto-recharge}"
	holder := func(old string) string { // waits for a holder other than old
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			if v, _ := h.RC.Get(ctx, leaseKey).Result(); v != "" && v != old {
				return v
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no node took the auto-recharge lease")
		return ""
	}
	// the first node started holds the lease until killed
	a := serve()
	tok := holder("")
	b := serve()
	pendingCount := func() int64 {
		n, err := h.RC.HLen(ctx, h.Prefix+"{"+sub+"}:tp").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	state := func(want string, timeout time.Duration) balance.RechargeState {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			s, ok, err := h.Balances.RechargeState(ctx, sub)
			if err != nil {
				t.Fatal(err)
			}
			if ok && s.Status == want {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("auto-recharge state %+v, want %s\n%s", s, want, b.out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	total := func(want int64) {
		t.Helper()
		if v, err := h.Balances.Balance(ctx, sub); err != nil || v.Total != credit.Credits(want) {
			t.Fatalf("balance %v (%v), want %d", v.Total, err, want)
		}
	}
	callback := func(node *serveProc, id string) {
		t.Helper()
		body := fmt.Appendf(nil, `{"subscription_id":%q,"topup_id":%q,"status":"succeeded"}`, sub, id)
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addrs[node]+"/v1/payments/callback", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.HeaderPaymentSignature, webhook.Sign(secret, time.Now(), body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"confirmed"`) {
			t.Fatalf("payment callback: %d %s", resp.StatusCode, b)
		}
	}

	if _, err := h.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "use-1", Subscription: sub, Amount: -credit.Credits(60), Reason: "usage", Actor: "test"}, "recharge-pay"); err != nil {
		t.Fatal(err)
	}
	a.kill() // the lease holder, between the crossing and its top-up
	a = serve()
	holder(tok) // b (or the new a) after the lease's TTL
	s := state("pending", 45*time.Second)
	if n := pendingCount(); n != 1 {
		t.Fatalf("%d pending top-ups for one crossing", n)
	}
	total(40) // not credits until paid
	for _, p := range []*serveProc{a, b} {
		p.kill() // while the top-up waits
	}
	a, b = serve(), serve()
	time.Sleep(20 * time.Second) // the lease's TTL, then passes of the new holder
	if n := pendingCount(); n != 1 {
		t.Fatalf("%d pending top-ups after the restart", n)
	}
	callback(b, s.TopUpID)
	total(340)
	done := state("done", 15*time.Second)
	if done.TopUpID != s.TopUpID || done.TopUpSeq == 0 {
		t.Fatalf("done state %+v, pending was %+v", done, s)
	}

	if _, err := h.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "use-2", Subscription: sub, Amount: -credit.Credits(300), Reason: "usage", Actor: "test"}, "recharge-pay"); err != nil {
		t.Fatal(err)
	}
	s2 := state("pending", 15*time.Second)
	if s2.TopUpID == s.TopUpID || pendingCount() != 2 {
		t.Fatalf("second crossing: %+v, %d pending top-ups", s2, pendingCount())
	}
	callback(a, s2.TopUpID)
	total(340)
	state("done", 15*time.Second)
	time.Sleep(6 * time.Second) // another pass of the holder: nothing new
	if n := pendingCount(); n != 2 {
		t.Fatalf("%d pending top-ups for two crossings", n)
	}
	var rows uint64
	if err := h.Conn.QueryRow(ctx, `SELECT count() FROM credit_ledger FINAL WHERE subscription_id = ? AND kind = 'topup'`, sub).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("%d archived top-ups, want 2 (%v)", rows, err)
	}
}
