package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Header names of a dead letter, beside the original key and value.
const (
	HeaderReason    = "creditmeter-reason"
	HeaderDetail    = "creditmeter-detail"
	HeaderField     = "creditmeter-field"
	HeaderTopic     = "creditmeter-original-topic"
	HeaderPartition = "creditmeter-original-partition"
	HeaderOffset    = "creditmeter-original-offset"
)

// DeadLetter is a message the engine will not rate, and why.
type DeadLetter struct {
	Msg    kafka.Message
	Reason string // a Reason* constant
	Field  string // the event field at fault, if any
	Detail string
}

// Reasons a message goes to the dead-letter topic. Bounded, so usable as a metric label.
const (
	ReasonMalformed      = "malformed" // not JSON, or not an event object
	ReasonInvalid        = "invalid"   // a field is missing or wrong
	ReasonUnknownCust    = "unknown_customer"
	ReasonNoSubscription = "no_active_subscription"
	ReasonUnratable      = "unratable" // no meter of the subscription's plan matches
	ReasonTooLate        = "too_late"  // older than the grace window
)

// Writers hold the producers of the usage topic and its dead-letter topic.
type Writers struct {
	usage *kafka.Writer
	dlq   *kafka.Writer
}

// NewWriters builds synchronous, fully acknowledged producers: a call returns
// only when the broker has the messages.
func NewWriters(brokers []string, topic, dlqTopic string) *Writers {
	mk := func(t string) *kafka.Writer {
		return &kafka.Writer{
			Addr:         kafka.TCP(brokers...),
			Topic:        t,
			Balancer:     &kafka.Hash{}, // key = customer id: one customer's events stay in order on one partition
			RequiredAcks: kafka.RequireAll,
			BatchSize:    1000,
			BatchBytes:   16 << 20,
			BatchTimeout: 2 * time.Millisecond,
			Compression:  kafka.Lz4,
		}
	}
	return &Writers{usage: mk(topic), dlq: mk(dlqTopic)}
}

// PublishRaw produces already-encoded events keyed by customer id.
func (w *Writers) PublishRaw(ctx context.Context, msgs ...kafka.Message) error {
	if err := w.usage.WriteMessages(ctx, msgs...); err != nil {
		return &RetryableError{Op: "produce usage events", Err: err}
	}
	return nil
}

// SendDLQ produces dead letters with the reason and the original position in
// headers. It returns when they are durable, so the caller may then commit.
func (w *Writers) SendDLQ(ctx context.Context, dls []DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(dls))
	for i, d := range dls {
		h := append([]kafka.Header(nil), d.Msg.Headers...)
		h = append(h,
			kafka.Header{Key: HeaderReason, Value: []byte(d.Reason)},
			kafka.Header{Key: HeaderDetail, Value: []byte(d.Detail)},
			kafka.Header{Key: HeaderField, Value: []byte(d.Field)},
			kafka.Header{Key: HeaderTopic, Value: []byte(d.Msg.Topic)},
			kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(d.Msg.Partition))},
			kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(d.Msg.Offset, 10))},
		)
		msgs[i] = kafka.Message{Key: d.Msg.Key, Value: d.Msg.Value, Headers: h}
	}
	if err := w.dlq.WriteMessages(ctx, msgs...); err != nil {
		return &RetryableError{Op: "produce dead letters", Err: err}
	}
	return nil
}

// Close flushes and closes both producers.
func (w *Writers) Close() error {
	return errors.Join(w.usage.Close(), w.dlq.Close())
}

// RetryableError wraps a failure of a service that may succeed when retried
// (broker, Redis or ClickHouse unavailable).
type RetryableError struct {
	Op  string
	Err error
}

func (e *RetryableError) Error() string { return fmt.Sprintf("%s: %v (retryable)", e.Op, e.Err) }
func (e *RetryableError) Unwrap() error { return e.Err }

// Temporary marks the error as worth retrying, in kafka-go's manner.
func (e *RetryableError) Temporary() bool { return true }

// Consumer reads the usage topic in a consumer group and commits explicitly.
type Consumer struct {
	mu  sync.Mutex
	r   *kafka.Reader
	cfg kafka.ReaderConfig
}

// ConsumerConfig configures NewConsumer.
type ConsumerConfig struct {
	Brokers []string
	Topic   string
	Group   string
	MaxWait time.Duration // longest a fetch waits for new data
}

// NewConsumer joins the group; a new group starts at the oldest offset.
func NewConsumer(c ConsumerConfig) *Consumer {
	if c.MaxWait <= 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	rc := kafka.ReaderConfig{
		Brokers:        c.Brokers,
		Topic:          c.Topic,
		GroupID:        c.Group,
		StartOffset:    kafka.FirstOffset,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        c.MaxWait,
		QueueCapacity:  10000,
		CommitInterval: 0, // commits are synchronous: only after balance and archive are durable
		// kfake has no initial rebalance delay; a short join keeps failover quick.
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		ReadBackoffMin:    10 * time.Millisecond,
		ReadBackoffMax:    100 * time.Millisecond,
	}
	return &Consumer{r: kafka.NewReader(rc), cfg: rc}
}

func (c *Consumer) reader() *kafka.Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r
}

// Rewind leaves the group and joins it again, so the next fetches start
// from the committed offsets: what was fetched and not committed is read
// again.
func (c *Consumer) Rewind(ctx context.Context) error {
	c.mu.Lock()
	old := c.r
	c.r = kafka.NewReader(c.cfg)
	c.mu.Unlock()
	if err := old.Close(); err != nil {
		return &RetryableError{Op: "leave the group to rewind", Err: err}
	}
	return nil
}

// Fetch returns up to max messages, waiting at most linger after the first
// one arrives. It blocks until at least one message arrives or ctx ends.
func (c *Consumer) Fetch(ctx context.Context, max int, linger time.Duration) ([]kafka.Message, error) {
	r := c.reader()
	first, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := make([]kafka.Message, 1, max)
	msgs[0] = first
	lctx, cancel := context.WithTimeout(ctx, linger)
	defer cancel()
	for len(msgs) < max {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break // linger over
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// Commit commits the offsets of msgs (the highest per partition).
func (c *Consumer) Commit(ctx context.Context, msgs []kafka.Message) error {
	if err := c.reader().CommitMessages(ctx, msgs...); err != nil {
		return &RetryableError{Op: "commit offsets", Err: err}
	}
	return nil
}

// Lag is the consumer's lag as kafka-go last saw it.
func (c *Consumer) Lag() int64 { return c.reader().Stats().Lag }

// Close leaves the group.
func (c *Consumer) Close() error { return c.reader().Close() }
