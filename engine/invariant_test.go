package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// brokenBooks refuses every batch as a script does whose subscription's
// books are broken.
type brokenBooks struct{}

func (brokenBooks) Apply(_ context.Context, bs []balance.Batch) ([]balance.BatchResult, error) {
	out := make([]balance.BatchResult, len(bs))
	var errs []error
	for i, b := range bs {
		out[i].Subscription = b.Subscription
		out[i].Err = fmt.Errorf("%w: CMINVARIANT balance 1 is not the remainders 0 less the debt 0", balance.ErrInvariant)
		errs = append(errs, out[i].Err)
	}
	return out, errors.Join(errs...)
}

// Issue 19 item 6: broken books are permanent — the engine stops with the
// error instead of retrying forever, and commits nothing.
func TestBrokenBooksStopTheEngine(t *testing.T) {
	ev := rating.Event{ID: "e1", CustomerID: "c1", Name: "email.sent", Timestamp: time.Now()}
	src := &oneBatch{msgs: []kafka.Message{{Topic: "usage-events", Partition: 0, Offset: 7, Value: ingest.AppendJSON(nil, &ev)}},
		committed: make(chan []kafka.Message, 1)}
	e, err := engine.New(engine.Config{RetryMin: time.Millisecond}, src, enginetest.NopDLQ{}, oneLine{}, brokenBooks{}, &recordingArchive{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = e.Run(ctx)
	if !errors.Is(err, balance.ErrInvariant) || ctx.Err() != nil {
		t.Fatalf("engine ended with %v (context: %v), want it to stop on ErrInvariant", err, ctx.Err())
	}
	select {
	case <-src.committed:
		t.Fatal("committed offsets of a refused batch")
	default:
	}
}
