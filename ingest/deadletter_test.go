package ingest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

func header(m kafka.Message, k string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// recordBatchBound is an upper bound of the record batch the broker measures
// for msgs: batch header, per-record varints and compression framing.
func recordBatchBound(msgs ...kafka.Message) int {
	n := 61 + 1024
	for i := range msgs {
		n += 30 + len(msgs[i].Key) + len(msgs[i].Value)
		for _, h := range msgs[i].Headers {
			n += 10 + len(h.Key) + len(h.Value)
		}
	}
	return n
}

func TestDeadLetterMessageFitsTheLimit(t *testing.T) {
	const limit = 1_000_000
	pos := kafka.Message{Topic: "usage-events", Partition: 3, Offset: 17, Key: []byte("dave")}
	for _, tc := range []struct {
		name      string
		value     int
		headers   int // bytes of original headers
		key       int
		truncated bool
		minimal   bool
	}{
		{name: "small value kept whole", value: 100},
		{name: "huge value cut", value: 1_048_400, truncated: true},
		{name: "value at the limit cut", value: limit, truncated: true},
		{name: "huge original headers: minimal", value: 10, headers: 2_000_000, truncated: true, minimal: true},
		{name: "huge key: minimal", value: 10, key: 2_000_000, truncated: true, minimal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := pos
			m.Value = []byte(strings.Repeat("v", tc.value))
			if tc.key > 0 {
				m.Key = []byte(strings.Repeat("k", tc.key))
			}
			m.Headers = []kafka.Header{{Key: "trace", Value: []byte("t1")}}
			if tc.headers > 0 {
				m.Headers = append(m.Headers, kafka.Header{Key: "big", Value: []byte(strings.Repeat("h", tc.headers))})
			}
			d := DeadLetter{Msg: m, Reason: ReasonMalformed, Field: "id", Detail: strings.Repeat("é", 5000)}
			got := DeadLetterMessage(d, limit)
			if b := recordBatchBound(got); b > limit {
				t.Fatalf("dead letter needs up to %d bytes, limit %d", b, limit)
			}
			size, ok := header(got, HeaderTruncated)
			if ok != tc.truncated || (ok && size != fmt.Sprint(tc.value)) {
				t.Errorf("%s = %q (%v), want truncated=%v with the original size %d", HeaderTruncated, size, ok, tc.truncated, tc.value)
			}
			if !strings.HasPrefix(string(m.Value), string(got.Value)) || (!tc.truncated && len(got.Value) != tc.value) {
				t.Errorf("value of %d bytes is not the original's (prefix)", len(got.Value))
			}
			if tc.truncated && !tc.minimal && len(got.Value) < limit/2 {
				t.Errorf("cut value keeps only %d bytes", len(got.Value))
			}
			if _, hasTrace := header(got, "trace"); hasTrace == tc.minimal {
				t.Errorf("original header kept: %v, want %v", hasTrace, !tc.minimal)
			}
			if tc.minimal && len(got.Value) != 0 {
				t.Errorf("minimal dead letter has a value of %d bytes", len(got.Value))
			}
			want := map[string]string{HeaderReason: ReasonMalformed, HeaderField: "id", HeaderTopic: "usage-events", HeaderPartition: "3", HeaderOffset: "17"}
			for k, v := range want {
				if h, _ := header(got, k); h != v {
					t.Errorf("%s = %q, want %q", k, h, v)
				}
			}
			if det, _ := header(got, HeaderDetail); len(det) > maxDetailBytes || !strings.HasPrefix(d.Detail, det) || det == "" {
				t.Errorf("detail of %d bytes, want a valid prefix of at most %d", len(det), maxDetailBytes)
			}
		})
	}
}

func TestMinimalDeadLetterKeepsReasonAndPosition(t *testing.T) {
	d := DeadLetter{Msg: kafka.Message{Topic: "usage-events", Partition: 1, Offset: 9, Key: []byte("dave"), Value: make([]byte, 5000),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("t1")}}}, Reason: ReasonInvalid, Field: "timestamp", Detail: "bad"}
	m := MinimalDeadLetter(d)
	if len(m.Value) != 0 || string(m.Key) != "dave" || len(m.Headers) != 7 {
		t.Fatalf("minimal: key %q, %d value bytes, headers %v", m.Key, len(m.Value), m.Headers)
	}
	for k, v := range map[string]string{HeaderReason: ReasonInvalid, HeaderField: "timestamp", HeaderDetail: "bad", HeaderTopic: "usage-events",
		HeaderPartition: "1", HeaderOffset: "9", HeaderTruncated: "5000"} {
		if h, _ := header(m, k); h != v {
			t.Errorf("%s = %q, want %q", k, h, v)
		}
	}
}

func TestPermanentProduceError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kafka.MessageSizeTooLarge, true},
		{fmt.Errorf("produce: %w", kafka.MessageSizeTooLarge), true},
		{kafka.RecordListTooLarge, true},
		{kafka.InvalidMessageSize, true},
		{kafka.InvalidRecord, true},
		{kafka.InvalidTimestamp, true},
		{kafka.MessageTooLargeError{}, true},
		{kafka.InvalidMessage, false}, // a corrupt transfer may succeed next time
		{kafka.NotLeaderForPartition, false},
		{kafka.RequestTimedOut, false},
		{kafka.LeaderNotAvailable, false},
		{kafka.TopicAuthorizationFailed, false}, // may be granted: wait, do not drop
		{io.ErrUnexpectedEOF, false},
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := PermanentProduceError(tc.err); got != tc.want {
			t.Errorf("PermanentProduceError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRecordErrorsSplitsPerRecord(t *testing.T) {
	werr := kafka.WriteErrors{nil, kafka.MessageSizeTooLarge, kafka.NotLeaderForPartition, kafka.InvalidRecord}
	perm, refusal, retry := recordErrors(werr, 4)
	if fmt.Sprint(perm) != "[1 3]" || !errors.Is(refusal, kafka.MessageSizeTooLarge) || !errors.Is(retry, kafka.NotLeaderForPartition) {
		t.Errorf("recordErrors: %v %v %v", perm, refusal, retry)
	}
	perm, _, retry = recordErrors(io.EOF, 3)
	if len(perm) != 0 || retry != io.EOF {
		t.Errorf("a connection failure is retried whole: %v %v", perm, retry)
	}
	perm, _, retry = recordErrors(kafka.MessageTooLargeError{}, 2)
	if fmt.Sprint(perm) != "[0 1]" || retry != nil {
		t.Errorf("refused before sending: %v %v", perm, retry)
	}
}
