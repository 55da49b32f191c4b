package ingest_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// brokerLimit is Kafka's default message.max.bytes, set explicitly.
const brokerLimit = 1_048_588

// poison is a message as kcat sends it with message.max.bytes raised: a
// random (incompressible, undecodable) value just under the broker's limit.
func poison(t *testing.T) kafka.Message {
	v := make([]byte, 1_048_400)
	if _, err := rand.Read(v); err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: "usage-events", Partition: 1, Offset: 41, Key: []byte("dave"), Value: v,
		Headers: []kafka.Header{{Key: "trace", Value: []byte("abc")}}}
}

func readDLQ(t *testing.T, addr string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "usage-events-dlq", GroupID: "dlq-" + testenv.RandomID(t),
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond, MaxBytes: 4 << 20})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("DLQ: read %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// Issue 13.1: a dead letter of a value near the broker's limit is truncated
// to fit, says so, and keeps the original position; the call does not fail.
func TestDeadLetterOfHugeValueIsTruncated(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	testenv.SetBrokerMaxMessageBytes(t, b.Addr(), brokerLimit)
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := poison(t)
	small := kafka.Message{Topic: "usage-events", Partition: 1, Offset: 42, Key: []byte("dave"), Value: []byte(`{"id":`)}
	err := w.SendDLQ(ctx, []ingest.DeadLetter{
		{Msg: p, Reason: ingest.ReasonMalformed, Detail: "event of 1048400 bytes exceeds 65536"},
		{Msg: small, Reason: ingest.ReasonMalformed, Detail: "unexpected end"},
	})
	if err != nil {
		t.Fatalf("SendDLQ: %v", err)
	}
	got := readDLQ(t, b.Addr(), 2)
	h := headers(got[0])
	if h[ingest.HeaderTruncated] != "1048400" {
		t.Errorf("truncated header %q, want the original size 1048400", h[ingest.HeaderTruncated])
	}
	if len(got[0].Value) == 0 || len(got[0].Value) >= len(p.Value) || string(got[0].Value) != string(p.Value[:len(got[0].Value)]) {
		t.Errorf("dead letter value: %d bytes, want a prefix of the original shorter than %d", len(got[0].Value), len(p.Value))
	}
	want := map[string]string{ingest.HeaderReason: ingest.ReasonMalformed, ingest.HeaderTopic: "usage-events",
		ingest.HeaderPartition: "1", ingest.HeaderOffset: "41", "trace": "abc"}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if h := headers(got[1]); h[ingest.HeaderOffset] != "42" || h[ingest.HeaderTruncated] != "" || string(got[1].Value) != `{"id":` {
		t.Errorf("small dead letter: %v %q", h, got[1].Value)
	}
}

// A broker whose limit is below the configured one refuses the truncated
// dead letter for good: it is replaced by a minimal one (headers only), not
// retried forever.
func TestDeadLetterRefusedForGoodIsReplacedByMinimal(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	testenv.SetBrokerMaxMessageBytes(t, b.Addr(), 200_000)
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq", ingest.MaxMessageBytes(brokerLimit))
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := poison(t)
	if err := w.SendDLQ(ctx, []ingest.DeadLetter{{Msg: p, Reason: ingest.ReasonMalformed, Field: "", Detail: "too big"}}); err != nil {
		t.Fatalf("SendDLQ: %v", err)
	}
	got := readDLQ(t, b.Addr(), 1)
	h := headers(got[0])
	if len(got[0].Value) != 0 || h[ingest.HeaderTruncated] != "1048400" || h[ingest.HeaderReason] != ingest.ReasonMalformed ||
		h[ingest.HeaderOffset] != "41" || h[ingest.HeaderPartition] != "1" || h[ingest.HeaderDetail] != "too big" {
		t.Errorf("minimal dead letter: %d bytes of value, headers %v", len(got[0].Value), h)
	}
}

// When even the minimal dead letter is refused for good, it is counted,
// logged and skipped: the call returns so the partition moves on.
func TestDeadLetterRefusedEvenMinimalIsSkipped(t *testing.T) {
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	testenv.SetTopicMaxMessageBytes(t, b.Addr(), "usage-events-dlq", 100)
	var dropped []string
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq",
		ingest.OnDeadLetterDropped(func(d ingest.DeadLetter, err error) {
			dropped = append(dropped, fmt.Sprint(d.Msg.Offset, " ", d.Reason))
		}))
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := kafka.Message{Topic: "usage-events", Partition: 0, Offset: 7, Key: []byte("dave"), Value: []byte(`{}`)}
	if err := w.SendDLQ(ctx, []ingest.DeadLetter{{Msg: msg, Reason: ingest.ReasonInvalid, Field: "id", Detail: "id is required"}}); err != nil {
		t.Fatalf("SendDLQ: %v", err)
	}
	if len(dropped) != 1 || dropped[0] != "7 invalid" {
		t.Errorf("dropped %v, want [7 invalid]", dropped)
	}
}
