package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/internal/broker"
)

const topic = "usage-events"

func start(t *testing.T, dir string) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: dir, Partitions: 3, Topics: []string{topic, "usage-events-dlq"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produce(t *testing.T, addr string, from, n int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{}, BatchSize: 100, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, 0, n)
	for i := from; i < from+n; i++ {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "cust-%d", i%7), Value: fmt.Appendf(nil, "event-%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consume reads n messages with a consumer group, committing each.
func consume(t *testing.T, addr, group string, n int) map[string]bool {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: group, Topic: topic, MaxWait: 50 * time.Millisecond, StartOffset: kafka.FirstOffset})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume after %d of %d: %v", len(got), n, err)
		}
		if got[string(m.Value)] {
			t.Fatalf("message %s seen twice", m.Value)
		}
		got[string(m.Value)] = true
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	return got
}

func TestTopicsCreatedWithPartitions(t *testing.T) {
	b := start(t, t.TempDir())
	defer b.Close()
	if len(b.Topics) != 2 {
		t.Fatalf("want 2 topics, got %+v", b.Topics)
	}
	for _, ts := range b.Topics {
		if ts.Partitions != 3 || !ts.Created {
			t.Errorf("topic %+v: want 3 partitions, created", ts)
		}
	}
}

// Data and committed offsets survive a broker restart on the same data dir.
func TestRestartKeepsDataAndOffsets(t *testing.T) {
	dir := t.TempDir()
	b := start(t, dir)
	produce(t, b.Addr(), 0, 300)
	first := consume(t, b.Addr(), "g1", 300)
	if len(first) != 300 {
		t.Fatalf("consumed %d", len(first))
	}
	b.Close()

	b = start(t, dir)
	defer b.Close()
	for _, ts := range b.Topics {
		if ts.Created {
			t.Errorf("topic %s re-created after restart; want it loaded from disk", ts.Topic)
		}
	}
	produce(t, b.Addr(), 300, 50)
	// Group g1 resumes after its committed offsets: only the 50 new events.
	second := consume(t, b.Addr(), "g1", 50)
	for v := range second {
		var i int
		if _, err := fmt.Sscanf(v, "event-%d", &i); err != nil || i < 300 {
			t.Errorf("group g1 re-read %s after restart; committed offsets were lost", v)
		}
	}
	// A new group reads everything: the first 300 were kept on disk.
	all := consume(t, b.Addr(), "g2", 350)
	if len(all) != 350 {
		t.Fatalf("want 350 messages after restart, got %d", len(all))
	}
}

func TestStartValidates(t *testing.T) {
	ctx := context.Background()
	if _, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", Partitions: 1}); err == nil {
		t.Error("want error without DataDir")
	}
	if _, err := broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir()}); err == nil {
		t.Error("want error with 0 partitions")
	}
	if _, err := broker.Start(ctx, broker.Options{Listen: "nonsense", DataDir: t.TempDir(), Partitions: 1}); err == nil {
		t.Error("want error with a bad listen address")
	}
}
