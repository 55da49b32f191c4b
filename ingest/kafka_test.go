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

func TestConsumeCommitAndDeadLetter(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "c%d", i%3), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := w.PublishRaw(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	c := mustConsumer(t, ingest.ConsumerConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", Group: "g"})
	var got []kafka.Message
	for len(got) < 20 {
		batch, err := c.Fetch(ctx, 7, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > 7 {
			t.Fatalf("fetch returned %d > max 7", len(batch))
		}
		got = append(got, batch...)
	}
	if len(got) != 20 {
		t.Fatalf("got %d messages", len(got))
	}
	bad := got[3]
	if err := w.SendDLQ(ctx, []ingest.DeadLetter{{Msg: bad, Reason: ingest.ReasonMalformed, Field: "id", Detail: "missing id"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, got); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The dead letter carries the original key, value, reason and position.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "usage-events-dlq", GroupID: "dlq-reader", StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	dl, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, x := range dl.Headers {
		h[x.Key] = string(x.Value)
	}
	if string(dl.Key) != string(bad.Key) || string(dl.Value) != string(bad.Value) {
		t.Errorf("dead letter %s=%s, want %s=%s", dl.Key, dl.Value, bad.Key, bad.Value)
	}
	want := map[string]string{
		ingest.HeaderReason: ingest.ReasonMalformed, ingest.HeaderField: "id", ingest.HeaderDetail: "missing id",
		ingest.HeaderTopic: "usage-events", ingest.HeaderPartition: fmt.Sprint(bad.Partition), ingest.HeaderOffset: fmt.Sprint(bad.Offset),
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}

	// After the commit, the group resumes past everything: a new message is the next one read.
	if err := w.PublishRaw(ctx, kafka.Message{Key: []byte("c1"), Value: []byte(`{"n":"after"}`)}); err != nil {
		t.Fatal(err)
	}
	c2 := mustConsumer(t, ingest.ConsumerConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", Group: "g"})
	defer c2.Close()
	next, err := c2.Fetch(ctx, 100, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(next) != 1 || string(next[0].Value) != `{"n":"after"}` {
		t.Fatalf("after commit the group read %d messages, first %s; want only the new one", len(next), next[0].Value)
	}
}
