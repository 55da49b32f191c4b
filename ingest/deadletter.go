package ingest

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

// DefaultMaxMessageBytes is the broker limit assumed when none is set: a
// little under Kafka's default message.max.bytes (1,048,588).
const DefaultMaxMessageBytes = 1_000_000

// MinMaxMessageBytes is the smallest broker limit creditmeter works with: a
// produce batch must hold the largest valid event (MaxEventBytes) with room.
const MinMaxMessageBytes = 100_000

// HeaderTruncated is set on a dead letter whose value was cut (or dropped) to
// fit the broker's limit; its value is the original value's size in bytes.
const HeaderTruncated = "creditmeter-truncated"

const (
	writerBatchSize = 1000 // messages per produce batch and partition
	// The broker measures a whole record batch: its 61-byte header, at most
	// ~7 bytes per record more than kafka-go's own size estimate (varints),
	// and compression framing. batchBytes keeps all three in reserve.
	batchReserve   = 61 + 1024
	recordReserve  = 16
	maxDetailBytes = 1024 // of creditmeter-detail
	maxMinimalKey  = 1024 // key kept on a minimal dead letter
)

// batchBytes is the most message bytes, as kafka-go counts them, one produce
// batch may carry for its record batch to stay within maxMessageBytes.
func batchBytes(maxMessageBytes int) int {
	return maxMessageBytes - batchReserve - writerBatchSize*recordReserve
}

// messageSize is at least kafka-go's size estimate of m (Message.totalSize).
func messageSize(m *kafka.Message) int {
	n := 22 + len(m.Key) + len(m.Value) + 5
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// DeadLetterMessage is the dead-letter record of d for a broker that accepts
// record batches of up to maxMessageBytes: the original key, value and
// headers plus the reason and the original position. A value that would not
// fit is cut to fit and the record says so in HeaderTruncated (the original
// size); when even the key and headers do not fit, it is MinimalDeadLetter.
func DeadLetterMessage(d DeadLetter, maxMessageBytes int) kafka.Message {
	budget := batchBytes(maxMessageBytes)
	h := make([]kafka.Header, 0, len(d.Msg.Headers)+7)
	h = append(h, d.Msg.Headers...)
	h = appendReason(h, d)
	m := kafka.Message{Key: d.Msg.Key, Value: d.Msg.Value, Headers: h}
	if messageSize(&m) <= budget {
		return m
	}
	m.Value = nil
	m.Headers = append(m.Headers, kafka.Header{Key: HeaderTruncated, Value: []byte(strconv.Itoa(len(d.Msg.Value)))})
	room := budget - messageSize(&m)
	if room <= 0 {
		return MinimalDeadLetter(d)
	}
	m.Value = d.Msg.Value[:room]
	return m
}

// MinimalDeadLetter is the smallest dead letter of d: the reason and the
// original position in headers, the original size in HeaderTruncated, no
// value and none of the original headers. It replaces a dead letter the
// broker refuses for good.
func MinimalDeadLetter(d DeadLetter) kafka.Message {
	key := d.Msg.Key
	if len(key) > maxMinimalKey {
		key = key[:maxMinimalKey]
	}
	h := appendReason(make([]kafka.Header, 0, 7), d)
	h = append(h, kafka.Header{Key: HeaderTruncated, Value: []byte(strconv.Itoa(len(d.Msg.Value)))})
	return kafka.Message{Key: key, Headers: h}
}

func appendReason(h []kafka.Header, d DeadLetter) []kafka.Header {
	return append(h,
		kafka.Header{Key: HeaderReason, Value: []byte(d.Reason)},
		kafka.Header{Key: HeaderDetail, Value: []byte(cut(d.Detail, maxDetailBytes))},
		kafka.Header{Key: HeaderField, Value: []byte(cut(d.Field, maxDetailBytes))},
		kafka.Header{Key: HeaderTopic, Value: []byte(d.Msg.Topic)},
		kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(d.Msg.Partition))},
		kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(d.Msg.Offset, 10))},
	)
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// PermanentProduceError reports whether the broker refused a record for a
// reason that retrying cannot change (too large, invalid record or
// timestamp). Unavailability, leadership changes, timeouts and
// authorization are not permanent: they may heal and are retried.
func PermanentProduceError(err error) bool {
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var ke kafka.Error
	if !errors.As(err, &ke) || ke.Temporary() {
		return false
	}
	switch ke {
	case kafka.MessageSizeTooLarge, kafka.InvalidMessageSize, kafka.RecordListTooLarge, kafka.InvalidTimestamp, kafka.InvalidRecord:
		return true
	}
	return false
}

// recordErrors splits the failure of WriteMessages over n messages into the
// indexes refused for good (with the first such refusal) and a failure worth
// retrying, if any.
func recordErrors(err error, n int) (permanent []int, refusal, retry error) {
	var werr kafka.WriteErrors
	if errors.As(err, &werr) && len(werr) == n {
		for i, e := range werr {
			switch {
			case e == nil:
			case PermanentProduceError(e):
				permanent = append(permanent, i)
				if refusal == nil {
					refusal = e
				}
			case retry == nil:
				retry = e
			}
		}
		return permanent, refusal, retry
	}
	if PermanentProduceError(err) { // refused before sending: nothing went out
		for i := range n {
			permanent = append(permanent, i)
		}
		return permanent, err, nil
	}
	return nil, nil, err
}
