package webhook_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

// The expiry sweep's breakage of an idle subscription is a grant.expired
// event naming the grant and the credits lost; sweeping again adds none.
func TestExpirySweepEmitsGrantExpired(t *testing.T) {
	rc, pfx := testenv.Keyspace(t)
	conn, cc := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	cat, _ := catalogstore.New(rc, pfx)
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC).UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	bal, err := balance.New(rc, balance.Options{Prefix: pfx, GraceWindow: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	acc := &accounts.Accounts{Store: bal, Archive: archive.NewWriter(conn)}
	sub, err := seed.Subscribe(ctx, cat, acc, seed.Subscription{Customer: "idle", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := bal.Grant(ctx, balance.GrantRequest{Key: "promo", Subscription: sub, Type: balance.Promotional, Amount: credit.Credits(40),
		EffectiveAt: now(), ExpiresAt: now().Add(24 * time.Hour), Reason: "promotion"})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _ := webhook.NewStore(rc, pfx, webhook.Options{})
	ep, _ := hooks.Create(ctx, webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: []string{webhook.GrantExpired}})
	n := &webhook.Notifier{Emitter: hooks, Ledger: bal, Notes: bal}
	sweep := &accounts.ExpirySweep{Accounts: acc, Notify: n.ExpiredRange, List: func(context.Context) ([]accounts.SubscriptionRef, error) {
		return []accounts.SubscriptionRef{{ID: sub, Customer: "idle"}}, nil
	}}
	clock.Store(now().Add(25 * time.Hour).UnixMilli())
	for range 2 {
		if _, err := sweep.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := hooks.Deliveries(ctx, ep.ID, 10)
	if err != nil || len(ds) != 1 || ds[0].EventType != webhook.GrantExpired {
		t.Fatalf("deliveries %+v, %v; want one grant.expired", ds, err)
	}
	body, _ := rc.Get(ctx, pfx+"{wh}:ev:"+ds[0].EventID).Result()
	for _, frag := range []string{`"grant_id":"` + g.GrantID + `"`, `"amount":"40"`, `"customer_id":"idle"`, `"balance":"100"`} {
		if !strings.Contains(body, frag) {
			t.Errorf("event %s lacks %s", body, frag)
		}
	}
}
