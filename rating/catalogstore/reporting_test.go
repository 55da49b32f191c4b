package catalogstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// TestSyncRecordsNewReportingMeters: a reporting meter belongs to every
// subscription, so creating one reaches the subscriptions compiled before
// it, and a subscription compiled incrementally gets the existing ones.
func TestSyncRecordsNewReportingMeters(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	first, err := s.CreateSubscription(ctx, seedSub(), "")
	if err != nil {
		t.Fatal(err)
	}
	r := rating.NewRater(nil)
	if _, _, err := s.Sync(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateFeature(ctx, &rating.Feature{ID: "peak-seats", Name: "Peak seats", Meter: rating.Meter{Kind: rating.MeterEventBased, EventName: "seats", Aggregation: rating.AggMax, Dimension: "n"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Sync(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCustomer(ctx, &rating.Customer{ID: "globex", Name: "Globex"}); err != nil {
		t.Fatal(err)
	}
	second := seedSub()
	second.CustomerID = "globex"
	res, err := s.CreateSubscription(ctx, second, "")
	if err != nil {
		t.Fatal(err)
	}
	if kind, errs, err := s.Sync(ctx, r); err != nil || len(errs) > 0 || kind != catalogstore.SyncIncremental {
		t.Fatalf("sync %d %v %v", kind, errs, err)
	}
	at := time.Now().Add(time.Minute)
	for cust, sub := range map[string]string{"acme": first.Subscription.ID, "globex": res.Subscription.ID} {
		lines, err := r.Rate(&rating.Event{CustomerID: cust, Name: "seats", Timestamp: at, Dims: []rating.Dim{{Key: "n", Num: rating.NumberOf(7), IsNum: true}}}, nil)
		if err != nil || len(lines) != 1 || lines[0].SubscriptionID != sub || lines[0].FeatureID != "peak-seats" || lines[0].Credits != 0 {
			t.Errorf("%s: %+v %v", cust, lines, err)
		}
	}
}
