package webhook_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

// A scheduled subscription's subscription.started is emitted once its
// start has passed, by whichever node looks next (none ran at the
// instant), once across two nodes and a restart, with the start in the
// payload; a subscription created, or cancelled, without its emission (the
// API node died) gets subscription.created or .ended from the sweep, one
// whose plan changed subscription.changed; and a start or end older than the lookback (an
// upgrade meeting old subscriptions) is not announced.
func TestLifecycleEmitsStartedOnce(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := context.Background()
	var clock atomic.Int64
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{Now: now})
	ep, err := hooks.Create(ctx, webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: webhook.Types})
	if err != nil {
		t.Fatal(err)
	}
	end := t0.Add(30 * 24 * time.Hour)
	start := t0.Add(2 * time.Hour)
	subs := []*rating.Subscription{
		{ID: "sched", CustomerID: "c1", PlanID: "p", StartAt: start, CreatedAt: t0},
		{ID: "cancelled", CustomerID: "c2", PlanID: "p", StartAt: t0.Add(-30 * 24 * time.Hour), EndAt: &end},
		{ID: "changed", CustomerID: "c3", PlanID: "p", StartAt: t0.Add(-30 * 24 * time.Hour), EndAt: &end, ReplacedBy: "changed-2"},
		{ID: "old", CustomerID: "c4", PlanID: "p", StartAt: t0.Add(-30 * 24 * time.Hour), CreatedAt: t0.Add(-30 * 24 * time.Hour)},
	}
	nodes := []*webhook.Lifecycle{{Store: hooks}, {Store: hooks}}
	pass := func() int {
		t.Helper()
		var wg sync.WaitGroup
		var total atomic.Int64
		for _, l := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := l.Once(ctx, subs)
				if err != nil {
					t.Error(err)
				}
				total.Add(int64(n))
			}()
		}
		wg.Wait()
		return int(total.Load())
	}
	types := func() map[string]int {
		t.Helper()
		ds, err := hooks.Deliveries(ctx, ep.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, d := range ds {
			m[d.EventType+" "+d.EventID]++
		}
		return m
	}
	pass()
	ended, _ := webhook.EndEvent(subs[1])
	changed, _ := webhook.EndEvent(subs[2])
	started := webhook.StartedEvent(subs[0])
	got := types()
	created := webhook.CreatedEvent(subs[0])
	if len(got) != 3 || got[webhook.SubscriptionEnded+" "+ended.ID] != 1 || got[webhook.SubscriptionChanged+" "+changed.ID] != 1 ||
		got[webhook.SubscriptionCreated+" "+created.ID] != 1 {
		t.Fatalf("before the start: %v; want only the repaired created, ended and changed", got)
	}
	clock.Store(start.Add(5 * time.Hour).UnixMilli()) // no node looked at the start
	pass()
	pass()
	nodes = []*webhook.Lifecycle{{Store: hooks}} // a restart: memory empty
	if n := pass(); n != 0 {
		t.Errorf("a restarted node emitted %d events again", n)
	}
	got = types()
	if len(got) != 4 || got[webhook.SubscriptionStarted+" "+started.ID] != 1 {
		t.Fatalf("after the start: %v; want one subscription.started %s", got, started.ID)
	}
	body, err := rc.Get(ctx, pfx+"{wh}:ev:"+started.ID).Result()
	if err != nil {
		t.Fatal(err)
	}
	var e webhook.Event
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Data.StartsAt != "2026-12-01T11:00:00Z" || e.Data.Customer != "c1" ||
		e.Data.Subscription != "sched" || !e.CreatedAt.Equal(now()) {
		t.Fatalf("subscription.started body %s (%v): want starts_at the start, created_at when emitted", body, err)
	}
}

// The hash of what was told does not keep every subscription ever made:
// once a subscription has ended and was created more than the lookback
// ago, its fields are dropped (it is never announced again anyway).
func TestLifecycleForgetsOldEndedSubscriptions(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	ctx := context.Background()
	var clock atomic.Int64
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{Now: now})
	end := t0.Add(time.Hour)
	subs := []*rating.Subscription{
		{ID: "short", CustomerID: "c1", PlanID: "p", StartAt: t0, CreatedAt: t0, EndAt: &end},
		{ID: "live", CustomerID: "c2", PlanID: "p", StartAt: t0, CreatedAt: t0},
	}
	l := &webhook.Lifecycle{Store: hooks, Lookback: 24 * time.Hour}
	clock.Store(t0.Add(2 * time.Hour).UnixMilli())
	if n, err := l.Once(ctx, subs); err != nil || n != 5 {
		t.Fatalf("first pass: %d events, %v; want created+started of both and ended", n, err)
	}
	life := pfx + "{wh}:life"
	if n, _ := rc.HLen(ctx, life).Result(); n != 5 {
		t.Fatalf("life holds %d fields, want 5", n)
	}
	clock.Store(t0.Add(48 * time.Hour).UnixMilli())
	if n, err := l.Once(ctx, subs); err != nil || n != 0 {
		t.Fatalf("second pass: %d events, %v", n, err)
	}
	fs, _ := rc.HKeys(ctx, life).Result()
	if len(fs) != 2 || fs[0][2:] != "live" || fs[1][2:] != "live" {
		t.Fatalf("life fields %v; want only live's two", fs)
	}
}
