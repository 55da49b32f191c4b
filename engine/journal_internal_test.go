package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// recorder keeps what the engine archives and commits; the balances are real.
type recorder struct {
	enginetest.NopSource
	enginetest.NopDLQ
	mu   sync.Mutex
	rows map[string]archive.RatedRow
}

func (r *recorder) WriteUsage(_ context.Context, rows []archive.RatedRow) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range rows {
		r.rows[x.EventID] = x
	}
	return nil
}
func (r *recorder) WriteLedger(context.Context, []archive.LedgerRow) error { return nil }
func (r *recorder) SendDLQ(context.Context, []ingest.DeadLetter) error     { return nil }
func (r *recorder) Fetch(context.Context, int, time.Duration) ([]kafka.Message, error) {
	return nil, context.Canceled
}
func (r *recorder) Commit(context.Context, []kafka.Message) error { return nil }

// With batches in flight (prepared, not yet archived or committed), a crash,
// a restart that prepares the replayed batches again and a second crash
// must still leave every event's first result in the journal: the journal
// bound is what was committed, never the offsets of the batch at hand.
func TestJournalSurvivesCrashesWithBatchesInFlight(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	ctx := context.Background()
	cat, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := balance.New(rc, balance.Options{Prefix: prefix})
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
	at := time.Now().UTC()
	batch := func(from, to int) []kafka.Message {
		var msgs []kafka.Message
		for o := from; o < to; o++ {
			ev := rating.Event{ID: fmt.Sprint("e", o), CustomerID: "c", Name: "email.sent", Timestamp: at}
			msgs = append(msgs, kafka.Message{Topic: "usage-events", Partition: 0, Offset: int64(o), Value: ingest.AppendJSON(nil, &ev)})
		}
		return msgs
	}
	newEngine := func() *Engine {
		e, err := New(Config{}, rec, rec, rater, bs, rec)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Life 1 applies two batches and dies before archiving either.
	e := newEngine()
	for _, b := range [][2]int{{0, 10}, {10, 20}} {
		if _, err := e.prepare(ctx, batch(b[0], b[1])); err != nil {
			t.Fatal(err)
		}
	}
	// Life 2 prepares the replays of both and dies too.
	e = newEngine()
	for _, b := range [][2]int{{0, 10}, {10, 20}} {
		if _, err := e.prepare(ctx, batch(b[0], b[1])); err != nil {
			t.Fatal(err)
		}
	}
	// Life 3 finishes them: every event is archived with its first draws.
	e = newEngine()
	for _, b := range [][2]int{{0, 10}, {10, 20}} {
		if err := e.Process(ctx, batch(b[0], b[1])); err != nil {
			t.Fatal(err)
		}
	}
	for o := 0; o < 20; o++ {
		r, ok := rec.rows[fmt.Sprint("e", o)]
		if !ok || len(r.GrantIDs) != 1 || r.Funded != r.Credits {
			t.Fatalf("event at offset %d archived as %+v (found %v)", o, r, ok)
		}
	}
	v, err := bs.Balance(ctx, "sub-c")
	if err != nil || v.Total.String() != "980" {
		t.Fatalf("balance %s (%v), want 980", v.Total, err)
	}
}
