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
)

// orphanSource is a member with nothing to fetch in a group where another
// partition has messages that nobody commits: a partition the assignment
// left out, or one held by a member that stopped. Rewinding (rejoining)
// makes the group rebalance, after which the partition moves again.
type orphanSource struct {
	rewinds atomic.Int32
	mu      sync.Mutex
	stuck   bool // partition 1 behind and not moving
	failing bool // GroupOffsets fails
}

func (s *orphanSource) Fetch(ctx context.Context, _ int, _ time.Duration) ([]kafka.Message, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *orphanSource) Commit(context.Context, []kafka.Message) error { return nil }

func (s *orphanSource) Rewind(context.Context) error {
	s.rewinds.Add(1)
	s.mu.Lock()
	s.stuck = false
	s.mu.Unlock()
	return nil
}

func (s *orphanSource) AssignedLag(context.Context) (map[int]int64, error) {
	return map[int]int64{0: 0}, nil
}

func (s *orphanSource) GroupOffsets(context.Context) (map[int]ingest.PartitionOffsets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return nil, context.DeadlineExceeded
	}
	p1 := ingest.PartitionOffsets{Committed: 10, End: 50}
	if !s.stuck {
		p1.Committed = 50
	}
	return map[int]ingest.PartitionOffsets{0: {Committed: 7, End: 7, Mine: true}, 1: p1}, nil
}

func runWatched(t *testing.T, src *orphanSource, stuckAfter time.Duration, for_ time.Duration) {
	t.Helper()
	e, err := engine.New(engine.Config{Metrics: engine.NewMetrics(prometheus.NewRegistry()), LagInterval: 10 * time.Millisecond, StuckAfter: stuckAfter},
		src, enginetest.NopDLQ{}, oneLine{}, enginetest.AllApplied{}, enginetest.NopArchive{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), for_)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// A partition of the group that has messages but sees no commit for
// StuckAfter makes a healthy member rejoin once, even though the partition
// is not its own.
func TestGroupStuckOnAnotherPartitionRebalances(t *testing.T) {
	src := &orphanSource{stuck: true}
	runWatched(t, src, 200*time.Millisecond, 1500*time.Millisecond)
	if n := src.rewinds.Load(); n != 1 {
		t.Fatalf("rejoined %d times, want once", n)
	}
}

// A group that commits (or has nothing waiting), or whose offsets cannot
// be read, is left alone.
func TestGroupMovingIsLeftAlone(t *testing.T) {
	for _, src := range []*orphanSource{{stuck: false}, {stuck: true, failing: true}} {
		runWatched(t, src, 100*time.Millisecond, 800*time.Millisecond)
		if n := src.rewinds.Load(); n != 0 {
			t.Fatalf("rejoined %d times (failing offsets %v), want never", n, src.failing)
		}
	}
}
