package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// GroupOffsets tells, for every partition of the topic, the group's
// committed offset and the partition's end, whether or not a member holds
// it: a member sees a partition nobody consumes.
func TestGroupOffsetsCoverEveryPartition(t *testing.T) {
	const parts = 3
	b := testenv.Broker(t, parts, "usage-events")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	var msgs []kafka.Message
	for i := range 30 {
		msgs = append(msgs, kafka.Message{Partition: i % parts, Key: fmt.Appendf(nil, "c%d", i), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := w.PublishRaw(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	ends := map[int]int64{}
	client := &kafka.Client{Addr: kafka.TCP(b.Addr())}
	for p := range parts {
		lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"usage-events": {kafka.LastOffsetOf(p)}}})
		if err != nil {
			t.Fatal(err)
		}
		ends[p] = lo.Topics["usage-events"][0].LastOffset
	}

	c, err := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.GroupOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != parts {
		t.Fatalf("offsets of %d partitions, want %d: %v", len(before), parts, before)
	}
	for p, o := range before {
		if o.Committed != 0 || o.End != ends[p] || o.Lag() != ends[p] {
			t.Errorf("partition %d before any commit: %+v (lag %d), want committed 0, end %d", p, o, o.Lag(), ends[p])
		}
	}

	// Commit one message of the first partition fetched.
	batch, err := c.Fetch(ctx, 1, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	after, err := c.GroupOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := batch[0]
	for p, o := range after {
		want := int64(0)
		if p == m.Partition {
			want = m.Offset + 1
		}
		if o.Member == "" {
			t.Errorf("partition %d: no member, want this consumer's client id", p)
		}
		if o.Committed != want || o.End != ends[p] {
			t.Errorf("partition %d after committing %d/%d: %+v, want committed %d, end %d", p, m.Partition, m.Offset, o, want, ends[p])
		}
	}
}
