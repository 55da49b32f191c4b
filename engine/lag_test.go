package engine_test

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/rating"
)

// idleLagSource delivers no message and reports the lag of its assignment.
type idleLagSource struct {
	mu   sync.Mutex
	lags map[int]int64
}

func (s *idleLagSource) Fetch(ctx context.Context, _ int, _ time.Duration) ([]kafka.Message, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (s *idleLagSource) Commit(context.Context, []kafka.Message) error { return nil }
func (s *idleLagSource) AssignedLag(context.Context) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.lags), nil
}
func (s *idleLagSource) assign(l map[int]int64) {
	s.mu.Lock()
	s.lags = l
	s.mu.Unlock()
}

// With no message flowing, the lag of exactly the assigned partitions is
// exported; a partition handed to another member loses its series.
func TestLagOfAssignedPartitionsWithoutMessages(t *testing.T) {
	src := &idleLagSource{lags: map[int]int64{0: 7, 2: 0}}
	m := engine.NewMetrics(prometheus.NewRegistry())
	e, err := engine.New(engine.Config{Metrics: m, LagInterval: 10 * time.Millisecond}, src, enginetest.NopDLQ{},
		rating.NewRater(nil), enginetest.AllApplied{}, enginetest.NopArchive{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitMetric := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := testutil.CollectAndCompare(m.Lag, strings.NewReader(want), "creditmeter_consumer_lag")
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	const head = "# HELP creditmeter_consumer_lag " + "Messages behind the end of the partition, for each partition assigned to this member: as of the last batch, and from the group's committed offset every few seconds.\n# TYPE creditmeter_consumer_lag gauge\n"
	waitMetric(head + "creditmeter_consumer_lag{partition=\"0\"} 7\ncreditmeter_consumer_lag{partition=\"2\"} 0\n")
	src.assign(map[int]int64{1: 5})
	waitMetric(head + "creditmeter_consumer_lag{partition=\"1\"} 5\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
