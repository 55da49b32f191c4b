package webhook_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/webhook"
)

// crossingBatch opens sub (low below 20 credits) with 30 credits and
// returns a batch of 15 one-credit lines that takes it below 20.
func crossingBatch(t *testing.T, bal *balance.Store, sub string) balance.Batch {
	t.Helper()
	ctx := context.Background()
	if _, err := bal.OpenAccount(ctx, balance.AccountSpec{Subscription: sub, Customer: "cust-" + sub, Policy: balance.Unfunded,
		LowThreshold: credit.Credits(20), Currency: "USD", CreditValue: decimal.NewFromInt(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := bal.Grant(ctx, balance.GrantRequest{Key: "included", Subscription: sub, Type: balance.Promotional, Amount: credit.Credits(30)}); err != nil {
		t.Fatal(err)
	}
	b := balance.Batch{Subscription: sub, Topic: "usage", Partition: 0}
	for i := range 15 {
		b.Lines = append(b.Lines, balance.Line{EventID: fmt.Sprintf("%s-%d", sub, i), Offset: int64(i), Time: time.Now(), Credits: credit.Credits(1)})
	}
	return b
}

// A node applies a batch that crosses the low-balance threshold and dies
// before its emission step runs; Kafka redelivers the batch to another
// node, whose notifier must still emit balance.low, once, with the id of
// the crossing (subscription + the ledger seq of the change).
func TestCrossingSurvivesANodeDyingBeforeEmission(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := context.Background()
	bal, err := balance.New(rc, balance.Options{Prefix: pfx})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{})
	ep, err := hooks.Create(ctx, webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: webhook.Types})
	if err != nil {
		t.Fatal(err)
	}
	b := crossingBatch(t, bal, "sub-die")
	// node 1: the balance write happens, the emission never does
	first, err := bal.Apply(ctx, []balance.Batch{b})
	if err != nil || first[0].Crossing != balance.WentLow {
		t.Fatalf("first apply: %+v, %v; want a crossing down", first, err)
	}
	// node 2: the redelivered batch, then its notifier
	again, err := bal.Apply(ctx, []balance.Batch{b})
	if err != nil {
		t.Fatal(err)
	}
	n := &webhook.Notifier{Emitter: hooks, Ledger: bal, Notes: bal}
	if err := n.Batches(ctx, again); err != nil {
		t.Fatal(err)
	}
	ds, err := hooks.Deliveries(ctx, ep.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := webhook.SeqEventID(webhook.BalanceLow, "sub-die", first[0].LastSeq)
	if len(ds) != 1 || ds[0].EventID != want || ds[0].EventType != webhook.BalanceLow {
		t.Fatalf("deliveries %+v; want one balance.low %s", ds, want)
	}
}

// Changes made by a node that dies before emitting (usage that crosses
// down and exhausts, a top-up that crosses back up, breakage) are found by
// the sweep of two other nodes at once: the receiver gets each event once,
// with the id of its change, and the records are gone afterwards. On
// standalone Redis and on the Cluster (the records are in the
// subscription's own slot).
func TestSweepDeliversWhatADeadNodeLeft(t *testing.T) {
	for _, be := range testenv.RedisBackends(t) {
		t.Run(be.Name, func(t *testing.T) {
			rc := be.Open(t)
			pfx := testenv.KeyspaceOn(t, rc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			clock := time.Now()
			bal, err := balance.New(rc, balance.Options{Prefix: pfx, Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{})
			rcv, srv := newReceiver(t, 1)
			ep, err := hooks.Create(ctx, webhook.Endpoint{URL: srv.URL, Events: webhook.Types})
			if err != nil {
				t.Fatal(err)
			}
			rcv.secret = func() string { return ep.Secret }
			const sub = "sub-dead"
			b := crossingBatch(t, bal, sub)
			b.Lines = append(b.Lines, balance.Line{EventID: "big", Offset: 99, Time: clock, Credits: credit.Credits(30)})
			// node 1: writes, never emits
			res, err := bal.Apply(ctx, []balance.Batch{b})
			if err != nil || res[0].Crossing != balance.WentLow || res[0].Balance != 0 {
				t.Fatalf("apply: %+v, %v; want a crossing down to 0", res, err)
			}
			usage := res[0].LastSeq
			if _, err := bal.Grant(ctx, balance.GrantRequest{Key: "promo", Subscription: sub, Type: balance.Promotional, Amount: credit.Credits(5),
				EffectiveAt: clock, ExpiresAt: clock.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			top, err := bal.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: sub, Amount: credit.Credits(50)})
			if err != nil || top.Crossing != balance.WentOK {
				t.Fatalf("top-up: %+v, %v; want a crossing up", top, err)
			}
			clock = clock.Add(2 * time.Hour)
			exp, err := bal.Expire(ctx, sub)
			if err != nil || exp.FirstSeq == 0 {
				t.Fatalf("expire: %+v, %v; want breakage", exp, err)
			}
			// nodes 2 and 3 sweep at the same time, twice
			var wg sync.WaitGroup
			for range 2 {
				n := &webhook.Notifier{Emitter: hooks, Notes: bal, Ledger: bal}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 2 {
						if _, err := n.Sweep(ctx, []string{"other", sub}); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			if ps, err := bal.Notes(ctx, []string{sub}); err != nil || len(ps) != 0 {
				t.Fatalf("records left after the sweep: %+v, %v", ps, err)
			}
			d, _ := webhook.NewDispatcher(hooks, webhook.DispatcherOptions{Schedule: fast, Poll: 5 * time.Millisecond, Timeout: 2 * time.Second})
			dctx, stop := context.WithCancel(ctx)
			go d.Run(dctx)
			want := map[string]string{
				webhook.SeqEventID(webhook.BalanceLow, sub, usage):         webhook.BalanceLow,
				webhook.SeqEventID(webhook.BalanceExhausted, sub, usage):   webhook.BalanceExhausted,
				webhook.SeqEventID(webhook.TopUpCreated, sub, top.Seq):     webhook.TopUpCreated,
				webhook.SeqEventID(webhook.BalanceRecovered, sub, top.Seq): webhook.BalanceRecovered,
				webhook.SeqEventID(webhook.GrantExpired, sub, exp.Seq):     webhook.GrantExpired,
			}
			waitFor(t, 30*time.Second, func() bool {
				rcv.mu.Lock()
				defer rcv.mu.Unlock()
				return len(rcv.accepted) >= len(want)
			})
			time.Sleep(200 * time.Millisecond)
			stop()
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if len(rcv.accepted) != len(want) || rcv.badSig != 0 {
				t.Errorf("accepted %v (bad signatures %d), want once each of %v", rcv.accepted, rcv.badSig, want)
			}
			for id, typ := range want {
				if rcv.accepted[id] != 1 {
					t.Errorf("%s %s accepted %d times, want 1", typ, id, rcv.accepted[id])
				}
			}
			body, _ := rc.Get(ctx, pfx+"{wh}:ev:"+webhook.SeqEventID(webhook.TopUpCreated, sub, top.Seq)).Result()
			for _, frag := range []string{`"customer_id":"cust-sub-dead"`, `"amount":"50"`, `"charge":"50"`, `"currency":"USD"`, `"balance":"55"`} {
				if !contains(body, frag) {
					t.Errorf("topup.created %s lacks %s", body, frag)
				}
			}
		})
	}
}

// A pending top-up created and confirmed by a node that dies before its
// observers run: another node's sweep emits topup.pending,
// topup.confirmed and the confirmation's topup.created, once each.
func TestPendingTopUpSurvivesANodeDying(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := context.Background()
	bal, _ := balance.New(rc, balance.Options{Prefix: pfx})
	hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{})
	ep, err := hooks.Create(ctx, webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: webhook.Types})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bal.OpenAccount(ctx, balance.AccountSpec{Subscription: "sub-p", Customer: "cust-p", Policy: balance.Unfunded, Currency: "USD",
		CreditValue: decimal.NewFromInt(1)}); err != nil {
		t.Fatal(err)
	}
	p, _, err := bal.CreatePending(ctx, balance.PendingRequest{Key: "k", Subscription: "sub-p", Amount: credit.Credits(100), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bal.ConfirmPending(ctx, "sub-p", p.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := (&webhook.Notifier{Emitter: hooks, Notes: bal, Ledger: bal}).Sweep(ctx, []string{"sub-p"}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := hooks.Deliveries(ctx, ep.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, d := range ds {
		got[d.EventType]++
	}
	want := map[string]int{webhook.TopUpPending: 1, webhook.TopUpConfirmed: 1, webhook.TopUpCreated: 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// rechargeWorld opens sub (crossingBatch's account) and an endpoint for
// auto_recharge.succeeded.
func rechargeWorld(t *testing.T, sub string) (*balance.Store, *webhook.Store, webhook.Endpoint) {
	t.Helper()
	rc, pfx := testenv.Keyspace(t)
	bal, err := balance.New(rc, balance.Options{Prefix: pfx})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{})
	ep, err := hooks.Create(context.Background(), webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: []string{webhook.AutoRechargeSucceeded}})
	if err != nil {
		t.Fatal(err)
	}
	crossingBatch(t, bal, sub)
	return bal, hooks, ep
}

// A recharger that dies between the crossing's top-up and its own telling
// leaves no auto_recharge.succeeded behind: its next pass only replays the
// top-up. The top-up's durable note tells it instead, with the id the
// recharger gives (crossing and attempt from the key), so both tellings
// are one event.
func TestRechargeToldFromTheTopUpsNote(t *testing.T) {
	ctx := context.Background()
	sub := "sub-recharged"
	bal, hooks, ep := rechargeWorld(t, sub)
	for _, key := range []string{"auto-recharge:7", "auto-recharge:9#2", "manual-1"} {
		if _, err := bal.TopUp(ctx, balance.TopUpRequest{Key: key, Subscription: sub, Amount: credit.Credits(300)}); err != nil {
			t.Fatal(err)
		}
	}
	// a plan requiring payment confirmation: the crossing's pending top-up, confirmed
	p, _, err := bal.CreatePending(ctx, balance.PendingRequest{Key: "auto-recharge:12#3", Subscription: sub, Amount: credit.Credits(50), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bal.ConfirmPending(ctx, sub, p.ID); err != nil {
		t.Fatal(err)
	}
	n := &webhook.Notifier{Emitter: hooks, Ledger: bal, Notes: bal}
	if err := n.Drain(ctx, []string{sub}); err != nil {
		t.Fatal(err)
	}
	n.ObserveRecharge(sub, balance.RechargeState{Crossing: 7, Attempts: 1, Status: "done"}, credit.Credits(300))
	ds, err := hooks.Deliveries(ctx, ep.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{webhook.EventID(webhook.AutoRechargeSucceeded, sub, "7"): true, webhook.EventID(webhook.AutoRechargeSucceeded, sub, "9"): true,
		webhook.EventID(webhook.AutoRechargeSucceeded, sub, "12"): true}
	for _, d := range ds {
		if !want[d.EventID] {
			t.Errorf("unexpected delivery %s %s", d.EventType, d.EventID)
		}
		delete(want, d.EventID)
	}
	if len(want) != 0 || len(ds) != 3 {
		t.Fatalf("deliveries %+v; missing %v", ds, want)
	}
}

// A recharge whose first payment was declined buys its top-up on attempt 2
// with the crossing's one key "auto-recharge:G" (the payment's dedupe key:
// the recharger adds "#n" only to pending top-ups). The recharger's telling
// (attempt 2) and the top-up note's are one auto_recharge.succeeded.
func TestRechargeSucceededAfterADeclineIsOneEvent(t *testing.T) {
	ctx := context.Background()
	sub := "sub-declined-once"
	bal, hooks, ep := rechargeWorld(t, sub)
	if _, err := bal.TopUp(ctx, balance.TopUpRequest{Key: "auto-recharge:7", Subscription: sub, Amount: credit.Credits(300)}); err != nil {
		t.Fatal(err)
	}
	n := &webhook.Notifier{Emitter: hooks, Ledger: bal, Notes: bal}
	n.ObserveRecharge(sub, balance.RechargeState{Crossing: 7, Attempts: 2, Status: "done"}, credit.Credits(300))
	if err := n.Drain(ctx, []string{sub}); err != nil {
		t.Fatal(err)
	}
	ds, err := hooks.Deliveries(ctx, ep.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d auto_recharge.succeeded deliveries for one recharge, want 1: %+v", len(ds), ds)
	}
}
