package engine_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// stuckSource fetches nothing, though its partition has messages, until it
// is rewound: a reader that missed a rebalance.
type stuckSource struct {
	rewinds   atomic.Int32
	mu        sync.Mutex
	msgs      []kafka.Message
	committed chan struct{}
}

func (s *stuckSource) Fetch(ctx context.Context, _ int, _ time.Duration) ([]kafka.Message, error) {
	for {
		s.mu.Lock()
		m := s.msgs
		if s.rewinds.Load() > 0 {
			s.msgs = nil
		} else {
			m = nil
		}
		s.mu.Unlock()
		if m != nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (s *stuckSource) Commit(context.Context, []kafka.Message) error {
	close(s.committed)
	return nil
}

func (s *stuckSource) Rewind(context.Context) error { s.rewinds.Add(1); return nil }

func (s *stuckSource) AssignedLag(context.Context) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[int]int64{0: int64(len(s.msgs))}, nil
}

// A member whose partition has messages but that fetches nothing rejoins
// the group after StuckAfter, and then consumes.
func TestStuckConsumerRejoins(t *testing.T) {
	ev := rating.Event{ID: "e1", CustomerID: "c1", Name: "email.sent", Timestamp: time.Now()}
	src := &stuckSource{msgs: []kafka.Message{{Topic: "usage-events", Offset: 3, Value: ingest.AppendJSON(nil, &ev)}}, committed: make(chan struct{})}
	m := engine.NewMetrics(prometheus.NewRegistry())
	e, err := engine.New(engine.Config{Metrics: m, LagInterval: 20 * time.Millisecond, StuckAfter: 300 * time.Millisecond},
		src, enginetest.NopDLQ{}, oneLine{}, enginetest.AllApplied{}, enginetest.NopArchive{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-src.committed:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck consumer never rejoined")
	}
	cancel()
	<-done
	if n := src.rewinds.Load(); n != 1 {
		t.Fatalf("rejoined %d times, want once", n)
	}
}
