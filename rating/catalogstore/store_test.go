package catalogstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func newStore(t *testing.T) *catalogstore.Store {
	t.Helper()
	var rc redis.UniversalClient = testenv.Redis(t)
	if strings.HasPrefix(t.Name(), clusterSuite) {
		rc = testenv.RedisCluster(t)
	}
	s, err := catalogstore.New(rc, testenv.KeyspaceOn(t, rc))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func amt(s string) *credit.Amount { a := credit.MustParse(s); return &a }

func seedPlan() *rating.Plan {
	return &rating.Plan{ID: "ai-prepaid", Product: "ai-agents", Name: "AI Agents Prepaid", Type: rating.PlanPaid, BillingModel: rating.BillingPrepaid,
		Prepaid: &rating.PrepaidConfig{
			CreditCurrency: "AIT", TopUp: rating.TopUpModel{Type: rating.TopUpFlatRate},
			CurrencyValues: []rating.Price{{Currency: "USD", Value: decimal.RequireFromString("1.00")}},
			MinPurchase:    amt("250"), MaxPurchase: amt("8000"),
			Consumption: []rating.ConsumptionRate{{FeatureID: "ai-agent-email", CreditsPerUnit: credit.Credits(1)}},
			Overage:     rating.OverageUnfunded,
		}}
}

func seed(t *testing.T, s *catalogstore.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(_ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateCurrency(ctx, &rating.CreditCurrency{Code: "AIT", Name: "AI Tokens"}))
	must(s.CreateFeature(ctx, &rating.Feature{ID: "ai-agent-email", Name: "AI Agent Email", Meter: rating.Meter{Kind: rating.MeterEventBased, EventName: "email.sent", Aggregation: rating.AggCount}}))
	must(s.CreateFeature(ctx, &rating.Feature{ID: "storage", Name: "Storage", Meter: rating.Meter{Kind: rating.MeterPreAggregated}}))
	must(s.CreatePlan(ctx, seedPlan()))
	must(s.CreateCustomer(ctx, &rating.Customer{ID: "acme", Name: "Acme", BillingProvider: "Customers EMEA"}))
}

func seedSub() *rating.Subscription {
	v := decimal.RequireFromString("0.04")
	return &rating.Subscription{CustomerID: "acme", PlanID: "ai-prepaid", Currency: "USD", CreditValue: &v,
		Included: rating.IncludedCredits{Enabled: true, GrantType: rating.GrantPromotional, Amount: credit.Credits(100), Expiration: rating.Expiration{Rule: rating.ExpireNever}}}
}

func TestCreateIsIdempotentAndConflicts(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	created, err := s.CreateCurrency(ctx, &rating.CreditCurrency{Code: "AIT", Name: "AI Tokens"})
	if err != nil || created {
		t.Errorf("same currency again: created=%v err=%v", created, err)
	}
	if _, err := s.CreateCurrency(ctx, &rating.CreditCurrency{Code: "AIT", Name: "Other"}); !errors.Is(err, catalogstore.ErrConflict) {
		t.Errorf("different currency with same code: %v", err)
	}
	created, err = s.CreatePlan(ctx, seedPlan())
	if err != nil || created {
		t.Errorf("same plan again: %v %v", created, err)
	}
	plans, err := s.Plans(ctx)
	if err != nil || len(plans) != 1 || plans[0].Prepaid.MinPurchase.String() != "250" {
		t.Fatalf("plans %+v %v", plans, err)
	}
}

func TestInvalidWritesLeaveNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	v0, _ := s.Version(ctx)
	bad := seedPlan()
	bad.ID = "bad"
	bad.Prepaid.Consumption = append(bad.Prepaid.Consumption, rating.ConsumptionRate{FeatureID: "storage", CreditsPerUnit: credit.Credits(1)})
	_, err := s.CreatePlan(ctx, bad)
	var fe *rating.FieldError
	if !errors.As(err, &fe) || fe.Message != rating.MsgOnlyEventBased || fe.Field != "prepaid.consumption[1].feature_id" {
		t.Fatalf("pre-aggregated mapping: %v", err)
	}
	sub := seedSub()
	sub.Included.Amount = -5
	if _, err := s.CreateSubscription(ctx, sub, "key-bad"); !errors.As(err, &fe) || fe.Field != "included_credits.amount" {
		t.Fatalf("bad subscription: %v", err)
	}
	if v1, _ := s.Version(ctx); v1 != v0 {
		t.Errorf("version moved from %d to %d on rejected writes", v0, v1)
	}
	if _, err := s.Plan(ctx, "bad"); !errors.Is(err, catalogstore.ErrNotFound) {
		t.Errorf("rejected plan stored: %v", err)
	}
	if subs, _ := s.Subscriptions(ctx); len(subs) != 0 {
		t.Errorf("rejected subscription stored: %+v", subs)
	}
	// The key of a rejected request is free for a corrected one.
	res, err := s.CreateSubscription(ctx, seedSub(), "key-bad")
	if err != nil || !res.Created {
		t.Fatalf("corrected request: %+v %v", res, err)
	}
}

func TestSubscriptionIdempotency(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	first, err := s.CreateSubscription(ctx, seedSub(), "req-1")
	if err != nil || !first.Created || first.Subscription.ID == "" || first.Plan.ID != "ai-prepaid" {
		t.Fatalf("create: %+v %v", first, err)
	}
	again, err := s.CreateSubscription(ctx, seedSub(), "req-1")
	if err != nil || again.Created || again.Subscription.ID != first.Subscription.ID || !again.Subscription.StartAt.Equal(first.Subscription.StartAt) {
		t.Fatalf("replay: %+v %v", again, err)
	}
	other := seedSub()
	other.Included.Amount = credit.Credits(5)
	if _, err := s.CreateSubscription(ctx, other, "req-1"); !errors.Is(err, catalogstore.ErrConflict) {
		t.Errorf("same key, different request: %v", err)
	}
	// Another customer: a customer's subscriptions may not overlap.
	if _, err := s.CreateCustomer(ctx, &rating.Customer{ID: "acme-2", Name: "Acme 2", BillingProvider: "Customers EMEA"}); err != nil {
		t.Fatal(err)
	}
	byID := seedSub()
	byID.ID, byID.CustomerID = "sub-fixed", "acme-2"
	if r, err := s.CreateSubscription(ctx, byID, ""); err != nil || !r.Created {
		t.Fatal(err)
	}
	byID2 := seedSub()
	byID2.ID, byID2.CustomerID = "sub-fixed", "acme-2"
	if r, err := s.CreateSubscription(ctx, byID2, ""); err != nil || r.Created {
		t.Errorf("same id again: %+v %v", r, err)
	}
	subs, err := s.CustomerSubscriptions(ctx, "acme")
	if err != nil || len(subs) != 1 {
		t.Errorf("customer subscriptions %d %v", len(subs), err)
	}
	if subs[0].Billing.Provider != "Customers EMEA" {
		t.Errorf("billing default not applied: %+v", subs[0].Billing)
	}
}

func TestReplacePlanKeepsSubscriptionsServed(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	sub := seedSub()
	sub.CreditValue = nil // priced by the plan in USD
	if _, err := s.CreateSubscription(ctx, sub, ""); err != nil {
		t.Fatal(err)
	}
	p := seedPlan()
	p.Prepaid.CurrencyValues = []rating.Price{{Currency: "EUR", Value: decimal.RequireFromString("0.95")}}
	var fe *rating.FieldError
	if err := s.ReplacePlan(ctx, p); !errors.As(err, &fe) || fe.Field != "prepaid.currency_values" {
		t.Errorf("dropping USD under a USD subscription: %v", err)
	}
	p = seedPlan()
	p.Prepaid.Consumption[0].CreditsPerUnit = credit.Credits(2)
	if err := s.ReplacePlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Plan(ctx, "ai-prepaid")
	if got.Prepaid.Consumption[0].CreditsPerUnit != credit.Credits(2) {
		t.Errorf("plan not replaced: %+v", got.Prepaid.Consumption)
	}
	p.ID = "missing"
	if err := s.ReplacePlan(ctx, p); !errors.Is(err, catalogstore.ErrNotFound) {
		t.Errorf("replace missing plan: %v", err)
	}
}

func TestFollowSwapsCatalogChangesIntoRater(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seed(t, s)
	res, err := s.CreateSubscription(ctx, seedSub(), "")
	if err != nil {
		t.Fatal(err)
	}
	r := rating.NewRater(nil)
	done := make(chan struct{})
	go func() { s.Follow(ctx, r, 20*time.Millisecond, func(err error) { t.Error(err) }); close(done) }()
	ev := &rating.Event{ID: "e1", CustomerID: "acme", Name: "email.sent", Timestamp: time.Now().Add(time.Minute)}
	rateCredits := func() string {
		lines, err := r.Rate(ev, nil)
		if err != nil || len(lines) != 1 {
			return "error"
		}
		return lines[0].Credits.String() + " " + lines[0].Money.String() + " " + lines[0].SubscriptionID
	}
	waitFor(t, func() bool { return rateCredits() == "1 0.04 "+res.Subscription.ID })
	p := seedPlan()
	p.Prepaid.Consumption[0].CreditsPerUnit = credit.MustParse("1.5")
	if err := s.ReplacePlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rateCredits() == "1.5 0.06 "+res.Subscription.ID })
	cancel()
	<-done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConcurrentCreatesMakeOneSubscription(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	// Another customer: a customer's subscriptions may not overlap.
	if _, err := s.CreateCustomer(ctx, &rating.Customer{ID: "acme-2", Name: "Acme 2"}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	ids := make(chan string, 2*n)
	created := make(chan bool, 2*n)
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		go func() {
			r, err := s.CreateSubscription(ctx, seedSub(), "same-key")
			if err != nil {
				errs <- err
				return
			}
			ids <- r.Subscription.ID
			created <- r.Created
		}()
		go func() {
			sub := seedSub()
			sub.ID, sub.CustomerID = "sub-same-id", "acme-2"
			r, err := s.CreateSubscription(ctx, sub, "")
			if err != nil {
				errs <- err
				return
			}
			ids <- r.Subscription.ID
			created <- r.Created
		}()
	}
	seen, fresh := map[string]int{}, 0
	for i := 0; i < 2*n; i++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			seen[id]++
			if <-created {
				fresh++
			}
		}
	}
	if len(seen) != 2 || seen["sub-same-id"] != n || fresh != 2 {
		t.Errorf("ids %v, %d created; want 2 subscriptions created once each", seen, fresh)
	}
	if subs, _ := s.Subscriptions(ctx); len(subs) != 2 {
		t.Errorf("%d subscriptions stored, want 2", len(subs))
	}
}

func TestSyncCompilesOnlyNewSubscriptions(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	first, err := s.CreateSubscription(ctx, seedSub(), "")
	if err != nil {
		t.Fatal(err)
	}
	r := rating.NewRater(nil)
	sync := func(want catalogstore.SyncKind) {
		t.Helper()
		kind, errs, err := s.Sync(ctx, r)
		if err != nil || len(errs) > 0 || kind != want {
			t.Fatalf("sync: kind %d (want %d), errs %v, err %v", kind, want, errs, err)
		}
		if v, _ := s.Version(ctx); r.Table().Version() != v {
			t.Fatalf("rater at version %d, store at %d", r.Table().Version(), v)
		}
	}
	sync(catalogstore.SyncFull)
	sync(catalogstore.SyncNone)
	if _, err := s.CreateCustomer(ctx, &rating.Customer{ID: "globex", Name: "Globex"}); err != nil {
		t.Fatal(err)
	}
	second := seedSub()
	second.CustomerID = "globex"
	second.Consumption = []rating.ConsumptionRate{{FeatureID: "ai-agent-email", CreditsPerUnit: credit.MustParse("0.5")}}
	res, err := s.CreateSubscription(ctx, second, "")
	if err != nil {
		t.Fatal(err)
	}
	sync(catalogstore.SyncIncremental)
	if r.Table().Len() != 2 {
		t.Fatalf("%d subscriptions compiled, want 2", r.Table().Len())
	}
	at := time.Now().Add(time.Minute)
	for cust, want := range map[string]string{"acme": first.Subscription.ID + " 1", "globex": res.Subscription.ID + " 0.5"} {
		lines, err := r.Rate(&rating.Event{CustomerID: cust, Name: "email.sent", Timestamp: at}, nil)
		if err != nil || len(lines) != 1 || lines[0].SubscriptionID+" "+lines[0].Credits.String() != want {
			t.Errorf("%s: %+v %v, want %s", cust, lines, err, want)
		}
	}
	p := seedPlan()
	p.Prepaid.Consumption[0].CreditsPerUnit = credit.Credits(3)
	if err := s.ReplacePlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	sync(catalogstore.SyncFull)
	if lines, _ := r.Rate(&rating.Event{CustomerID: "acme", Name: "email.sent", Timestamp: at}, nil); len(lines) != 1 || lines[0].Credits != credit.Credits(3) {
		t.Errorf("after plan change: %+v", lines)
	}
}
