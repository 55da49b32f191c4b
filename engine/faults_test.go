package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// flakyLedger applies every batch and writes its ledger entry, but the
// first call answers as a store whose follow-up read failed: with an error
// no batch owns (the shape of issue 13 item 4), or on the batch itself.
type flakyLedger struct {
	mu      sync.Mutex
	calls   int
	onBatch bool
}

func (f *flakyLedger) Apply(_ context.Context, bs []balance.Batch) ([]balance.BatchResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := make([]balance.BatchResult, len(bs))
	for i, b := range bs {
		out[i].Subscription = b.Subscription
		out[i].Lines = make([]balance.LineResult, len(b.Lines))
		var sum credit.Amount
		for j, l := range b.Lines {
			out[i].Lines[j] = balance.LineResult{Status: balance.Applied, Draws: []balance.Draw{{Grant: "g1", Amount: l.Credits}}}
			sum += l.Credits
		}
		out[i].FirstSeq, out[i].LastSeq = 2, 2
		out[i].Entries = []balance.Entry{{Seq: 2, Kind: "usage", Amount: -sum, Time: time.Now(), Events: int64(len(b.Lines))}}
	}
	if f.calls == 1 {
		failure := errors.Join(balance.ErrUnavailable, errors.New("read of the ledger entries failed"))
		if f.onBatch {
			for i := range out {
				out[i].Err, out[i].Lines, out[i].Entries = failure, nil, nil
			}
			return out, failure
		}
		for i := range out {
			out[i].Entries = nil // the scripts ran; their entries were not read
		}
		return out, failure
	}
	return out, nil
}

// oneLine rates every event into one line of 1 credit of sub-1.
type oneLine struct{}

func (oneLine) Rate(ev *rating.Event, dst []rating.Line) ([]rating.Line, error) {
	return append(dst, rating.Line{SubscriptionID: "sub-1", CustomerID: ev.CustomerID, FeatureID: "f", Credits: credit.Credits(1)}), nil
}

// recordingArchive keeps what it is given.
type recordingArchive struct {
	mu     sync.Mutex
	usage  int
	ledger []archive.LedgerRow
}

func (a *recordingArchive) WriteUsage(_ context.Context, rows []archive.RatedRow) error {
	a.mu.Lock()
	a.usage += len(rows)
	a.mu.Unlock()
	return nil
}

func (a *recordingArchive) WriteLedger(_ context.Context, rows []archive.LedgerRow) error {
	a.mu.Lock()
	a.ledger = append(a.ledger, rows...)
	a.mu.Unlock()
	return nil
}

// oneBatch serves msgs once and records the commit.
type oneBatch struct {
	mu        sync.Mutex
	msgs      []kafka.Message
	committed chan []kafka.Message
}

func (s *oneBatch) Fetch(ctx context.Context, _ int, _ time.Duration) ([]kafka.Message, error) {
	s.mu.Lock()
	m := s.msgs
	s.msgs = nil
	s.mu.Unlock()
	if m == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return m, nil
}

func (s *oneBatch) Commit(_ context.Context, msgs []kafka.Message) error {
	s.committed <- msgs
	return nil
}

// Issue 13 item 4: a failure after the balance scripts ran (the read of
// their ledger entries) is retried, never dropped: the batch is committed
// only with its ledger rows archived.
func TestBalanceFailureAfterApplyIsRetried(t *testing.T) {
	for _, onBatch := range []bool{false, true} {
		r := oneLine{}
		ev := rating.Event{ID: "e1", CustomerID: "c1", Name: "email.sent", Timestamp: time.Now()}
		src := &oneBatch{msgs: []kafka.Message{{Topic: "usage-events", Partition: 0, Offset: 7, Value: ingest.AppendJSON(nil, &ev)}},
			committed: make(chan []kafka.Message, 1)}
		bal := &flakyLedger{onBatch: onBatch}
		arch := &recordingArchive{}
		e, err := engine.New(engine.Config{RetryMin: time.Millisecond}, src, enginetest.NopDLQ{}, r, bal, arch)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		select {
		case <-src.committed:
		case <-time.After(10 * time.Second):
			t.Fatal("never committed")
		}
		cancel()
		<-done
		arch.mu.Lock()
		if len(arch.ledger) != 1 || arch.usage != 1 || bal.calls < 2 {
			t.Errorf("onBatch=%v: committed with %d ledger rows and %d usage rows after %d apply calls; want 1, 1, a retry",
				onBatch, len(arch.ledger), arch.usage, bal.calls)
		}
		arch.mu.Unlock()
	}
}
