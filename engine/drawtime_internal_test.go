package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// A line is archived at the time its credits were drawn at; a redelivery
// processed later (after a crash before the commit) archives it at that
// same first time, not at a time clamped with the replay's clock: the
// archive is partitioned by month, so another time would be another row.
func TestReplayArchivesFirstDrawTime(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	ctx := context.Background()
	var ns atomic.Int64
	t0 := time.Date(2026, 11, 30, 23, 55, 0, 0, time.UTC)
	ns.Store(t0.Add(-2 * time.Hour).UnixNano()) // the subscription starts then
	now := func() time.Time { return time.Unix(0, ns.Load()).UTC() }
	cat, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	cat.SetClock(now)
	bs, err := balance.New(rc, balance.Options{Prefix: prefix, GraceWindow: 15 * time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Catalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{rows: map[string]archive.RatedRow{}}
	if _, err := seed.Subscribe(ctx, cat, &accounts.Accounts{Store: bs, Archive: rec}, seed.Subscription{Customer: "c", Plan: seed.PlanUnfunded, Included: "1000"}); err != nil {
		t.Fatal(err)
	}
	rater := rating.NewRater(nil)
	if _, err := cat.Refresh(ctx, rater); err != nil {
		t.Fatal(err)
	}
	ns.Store(t0.Add(time.Minute).UnixNano())
	stamps := map[string]time.Time{
		"ahead": t0.Add(3 * time.Minute),   // drawn at now, t0+1m
		"late":  t0.Add(-10 * time.Minute), // drawn at its time
		"old":   t0.Add(-time.Hour),        // drawn at now − grace
	}
	want := map[string]time.Time{"ahead": t0.Add(time.Minute), "late": t0.Add(-10 * time.Minute), "old": t0.Add(-14 * time.Minute)}
	var msgs []kafka.Message
	for _, id := range []string{"ahead", "late", "old"} {
		ev := rating.Event{ID: id, CustomerID: "c", Name: "email.sent", Timestamp: stamps[id]}
		msgs = append(msgs, kafka.Message{Topic: "usage-events", Partition: 0, Offset: int64(len(msgs)), Value: ingest.AppendJSON(nil, &ev)})
	}
	e, err := New(Config{Now: now}, rec, rec, rater, bs, rec)
	if err != nil {
		t.Fatal(err)
	}
	// Life 1 applies the batch and dies before archiving it.
	if _, err := e.prepare(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// Life 2 runs ten minutes later and archives the redelivered batch.
	ns.Store(t0.Add(11 * time.Minute).UnixNano())
	if e, err = New(Config{Now: now}, rec, rec, rater, bs, rec); err != nil {
		t.Fatal(err)
	}
	if err := e.Process(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	for id, at := range want {
		r, ok := rec.rows[id]
		if !ok || !r.EventTime.Equal(at) || r.Funded != r.Credits {
			t.Errorf("%s archived at %s (found %v, %+v), want %s", id, r.EventTime, ok, r, at)
		}
	}
}
