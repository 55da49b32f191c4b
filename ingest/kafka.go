package ingest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/rating"
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
	ReasonSubEnded       = "subscription_ended" // at or after its subscription's end
	ReasonUnratable      = "unratable"          // no meter of the subscription's plan matches
	ReasonTooLate        = "too_late"           // older than the grace window
)

// RateReason is the dead-letter reason of a rating error. The caller turns
// ReasonNoSubscription into ReasonUnknownCust when the customer does not
// exist.
func RateReason(err error) string {
	switch {
	case errors.Is(err, rating.ErrSubscriptionEnded):
		return ReasonSubEnded
	case errors.Is(err, rating.ErrNoActiveSubscription), errors.Is(err, rating.ErrSubscriptionNotActive):
		return ReasonNoSubscription
	case errors.Is(err, rating.ErrUnknownSubscription), errors.Is(err, rating.ErrCustomerMismatch):
		return ReasonNoSubscription
	default:
		return ReasonUnratable
	}
}

// ReasonField is the event field a rating reason points at ("" for none).
func ReasonField(reason string) string {
	switch reason {
	case ReasonUnknownCust:
		return "customer_id"
	case ReasonNoSubscription, ReasonSubEnded:
		return "subscription_id"
	}
	return ""
}

// Writers hold the producers of the usage topic and its dead-letter topic.
type Writers struct {
	usage *kafka.Writer
	dlq   *kafka.Writer
	// dlqOne sends one record per produce request: a record the broker
	// refuses is told apart from the others of its batch.
	dlqOne   *kafka.Writer
	maxBytes int
	dropped  func(DeadLetter, error)
	log      *slog.Logger
	conn     Conn
}

// WriterOption configures NewWriters.
type WriterOption func(*Writers)

// MaxMessageBytes is the largest record batch the broker accepts (its
// message.max.bytes, or the topics' max.message.bytes if smaller); default
// DefaultMaxMessageBytes. Produce batches and dead letters stay under it.
func MaxMessageBytes(n int) WriterOption { return func(w *Writers) { w.maxBytes = n } }

// OnDeadLetterDropped is called for a dead letter the broker refused for good
// even in its minimal form; it is then skipped (and logged).
func OnDeadLetterDropped(f func(DeadLetter, error)) WriterOption {
	return func(w *Writers) { w.dropped = f }
}

// WithConn connects the producers through c (its brokers, TLS and SASL)
// instead of plaintext to the brokers given to NewWriters.
func WithConn(c Conn) WriterOption { return func(w *Writers) { w.conn = c } }

// Balancer partitions usage events by key (the customer id) as the Java
// client's default partitioner and librdkafka's murmur2_random do:
// murmur2(key) & 0x7fffffff mod partitions; a record without a key goes to a
// random partition. So creditmeter and any other producer of the topic put a
// customer's events on the same partition, in order.
func Balancer() kafka.Balancer { return kafka.Murmur2Balancer{} }

// WithLogger sets the logger of dead letters cut, replaced or dropped
// (default slog.Default()).
func WithLogger(l *slog.Logger) WriterOption { return func(w *Writers) { w.log = l } }

// NewWriters builds synchronous, fully acknowledged producers: a call returns
// only when the broker has the messages.
func NewWriters(brokers []string, topic, dlqTopic string, opts ...WriterOption) *Writers {
	w := &Writers{maxBytes: DefaultMaxMessageBytes, log: slog.Default(), conn: Plain(brokers...)}
	for _, o := range opts {
		o(w)
	}
	if len(w.conn.Brokers) == 0 {
		w.conn.Brokers = brokers
	}
	w.maxBytes = max(w.maxBytes, MinMaxMessageBytes)
	tr := w.conn.Transport() // one pool of connections for the three producers
	mk := func(t string, size int) *kafka.Writer {
		return &kafka.Writer{
			Addr:         kafka.TCP(w.conn.Brokers...),
			Transport:    tr,
			Topic:        t,
			Balancer:     Balancer(),
			RequiredAcks: kafka.RequireAll,
			BatchSize:    size,
			// Per partition, kafka-go splits what one call writes into
			// batches of at most this many bytes: each fits the broker.
			BatchBytes:   int64(batchBytes(w.maxBytes)),
			BatchTimeout: 2 * time.Millisecond,
			Compression:  kafka.Lz4,
		}
	}
	w.usage, w.dlq, w.dlqOne = mk(topic, writerBatchSize), mk(dlqTopic, writerBatchSize), mk(dlqTopic, 1)
	return w
}

// PublishRaw produces already-encoded events keyed by customer id.
func (w *Writers) PublishRaw(ctx context.Context, msgs ...kafka.Message) error {
	if err := w.usage.WriteMessages(ctx, msgs...); err != nil {
		if PermanentProduceError(err) {
			return fmt.Errorf("produce usage events: %w", err)
		}
		return &RetryableError{Op: "produce usage events", Err: err}
	}
	return nil
}

// SendDLQ produces dead letters with the reason and the original position in
// headers. It returns when they are durable, so the caller may then commit.
// A dead letter never exceeds the broker's limit (its value is cut to fit),
// and one the broker refuses for good is never retried as it is: it is sent
// alone, then in its minimal form, then logged, counted and skipped. Only a
// failure that may heal (broker away) is returned, as a RetryableError.
func (w *Writers) SendDLQ(ctx context.Context, dls []DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(dls))
	for i, d := range dls {
		msgs[i] = DeadLetterMessage(d, w.maxBytes)
		if len(msgs[i].Value) < len(d.Msg.Value) {
			w.log.Warn("dead letter cut to the broker's limit", "topic", d.Msg.Topic, "partition", d.Msg.Partition,
				"offset", d.Msg.Offset, "reason", d.Reason, "bytes", len(d.Msg.Value), "kept", len(msgs[i].Value))
		}
	}
	err := w.dlq.WriteMessages(ctx, msgs...)
	if err == nil {
		return nil
	}
	refused, refusal, retry := recordErrors(err, len(msgs))
	// Alone, so the other records of a refused batch go through whole.
	refused, refusal, err = w.sendEach(ctx, refused, refusal, func(i int) kafka.Message { return msgs[i] })
	retry = firstErr(retry, err)
	refused, refusal, err = w.sendEach(ctx, refused, refusal, func(i int) kafka.Message {
		d := dls[i]
		w.log.Error("dead letter refused by the broker; sending it without its value", "topic", d.Msg.Topic,
			"partition", d.Msg.Partition, "offset", d.Msg.Offset, "reason", d.Reason, "bytes", len(d.Msg.Value), "err", refusal)
		return MinimalDeadLetter(d)
	})
	retry = firstErr(retry, err)
	for _, i := range refused {
		d := dls[i]
		w.log.Error("dead letter refused by the broker even without its value: skipped", "topic", d.Msg.Topic,
			"partition", d.Msg.Partition, "offset", d.Msg.Offset, "reason", d.Reason, "err", refusal)
		if w.dropped != nil {
			w.dropped(d, refusal)
		}
	}
	if retry != nil {
		return &RetryableError{Op: "produce dead letters", Err: retry}
	}
	return nil
}

// firstErr is a if not nil, else b (cmp.Or would compare the errors' values,
// which panics for slices such as kafka.WriteErrors).
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// sendEach sends msg(i) for each index, one record per request. It returns
// the indexes refused for good with the first refusal (prev if none), and a
// failure worth retrying, if any.
func (w *Writers) sendEach(ctx context.Context, idx []int, prev error, msg func(int) kafka.Message) ([]int, error, error) {
	if len(idx) == 0 {
		return nil, prev, nil
	}
	msgs := make([]kafka.Message, len(idx))
	for j, i := range idx {
		msgs[j] = msg(i)
	}
	err := w.dlqOne.WriteMessages(ctx, msgs...)
	if err == nil {
		return nil, prev, nil
	}
	refused, refusal, retry := recordErrors(err, len(msgs))
	for j := range refused {
		refused[j] = idx[refused[j]]
	}
	return refused, firstErr(refusal, prev), retry
}

// Close flushes and closes the producers.
func (w *Writers) Close() error {
	err := errors.Join(w.usage.Close(), w.dlq.Close(), w.dlqOne.Close())
	if t, ok := w.usage.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return err
}

// RetryableError wraps a failure of a service that may succeed when retried
// (broker, Redis or ClickHouse unavailable).
type RetryableError struct {
	Op  string
	Err error
}

func (e *RetryableError) Error() string { return fmt.Sprintf("%s: %v (retryable)", e.Op, e.Err) }
func (e *RetryableError) Unwrap() error { return e.Err }

// Is makes it fault.Unavailable.
func (e *RetryableError) Is(target error) bool { return target == fault.ErrUnavailable }

// Temporary marks the error as worth retrying, in kafka-go's manner.
func (e *RetryableError) Temporary() bool { return true }

// Consumer reads the usage topic in a consumer group and commits explicitly.
type Consumer struct {
	mu     sync.Mutex
	r      *kafka.Reader
	rcfg   kafka.ReaderConfig
	cfg    ConsumerConfig
	client *kafka.Client
	// clientID is unique to this consumer: it finds its own member (and so
	// its assigned partitions) in the group's description.
	clientID string
}

// Defaults of the group membership timeouts of NewConsumer.
const (
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = time.Second
	DefaultRebalanceTimeout  = 10 * time.Second
)

// ConsumerConfig configures NewConsumer.
type ConsumerConfig struct {
	Brokers []string
	// Conn, if it has brokers, is used instead of Brokers (TLS, SASL).
	Conn    Conn
	Topic   string
	Group   string
	MaxWait time.Duration // longest a fetch waits for new data
	// Group membership timeouts; zero keeps the defaults (session 10s,
	// heartbeat 1s, rebalance 10s). A member that dies without leaving the
	// group keeps its partitions until SessionTimeout passes.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration
	// RebalanceStrategy is how the group assigns partitions: "range" (the
	// default) or "round-robin" (see RebalanceStrategies).
	RebalanceStrategy string
	// Logger, if set, receives the group membership events of kafka-go
	// (joins, assignments, sync: Info) and its errors (Warn).
	Logger *slog.Logger
}

// ConfigError is NewConsumer's refusal of a config (kind fault.Invalid).
type ConfigError struct {
	Field, Message string
}

func (e *ConfigError) Error() string        { return "ingest: consumer " + e.Field + ": " + e.Message }
func (e *ConfigError) Is(target error) bool { return target == fault.ErrInvalid }

// NewConsumer joins the group; a new group starts at the oldest offset. A
// config without brokers, topic or group is refused (kafka-go would panic).
func NewConsumer(c ConsumerConfig) (*Consumer, error) {
	if c.MaxWait <= 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	if len(c.Conn.Brokers) == 0 {
		c.Conn.Brokers = c.Brokers
	}
	c.Brokers = c.Conn.Brokers
	switch {
	case len(c.Brokers) == 0 || slices.Contains(c.Brokers, ""):
		return nil, &ConfigError{Field: "brokers", Message: "at least one broker address is required, none empty"}
	case c.Topic == "":
		return nil, &ConfigError{Field: "topic", Message: "the topic is required"}
	case c.Group == "":
		return nil, &ConfigError{Field: "group", Message: "the consumer group is required"}
	}
	balancers, err := groupBalancers(c.RebalanceStrategy)
	if err != nil {
		return nil, err
	}
	// kfake has no initial rebalance delay; a short join keeps failover quick.
	c.SessionTimeout = cmp.Or(c.SessionTimeout, DefaultSessionTimeout)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.RebalanceTimeout = cmp.Or(c.RebalanceTimeout, DefaultRebalanceTimeout)
	id := "creditmeter-" + randomHex()
	rc := kafka.ReaderConfig{
		Brokers:           c.Brokers,
		Dialer:            c.Conn.Dialer(id),
		Topic:             c.Topic,
		GroupID:           c.Group,
		StartOffset:       kafka.FirstOffset,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           c.MaxWait,
		QueueCapacity:     10000,
		CommitInterval:    0, // commits are synchronous: only after balance and archive are durable
		HeartbeatInterval: c.HeartbeatInterval,
		SessionTimeout:    c.SessionTimeout,
		RebalanceTimeout:  c.RebalanceTimeout,
		GroupBalancers:    balancers,
		ReadBackoffMin:    10 * time.Millisecond,
		ReadBackoffMax:    100 * time.Millisecond,
	}
	if c.Logger != nil {
		rc.Logger, rc.ErrorLogger = kafkaLog(c.Logger)
	}
	return &Consumer{cfg: c, rcfg: rc, clientID: id, client: c.Conn.Client(10 * time.Second),
		r: kafka.NewReader(rc)}, nil
}

// RebalanceStrategies are the assignors kafka-go's consumer can run.
// kafka-go rebalances eagerly only: no cooperative-sticky (KIP-429).
var RebalanceStrategies = []string{"range", "round-robin"}

// groupBalancers offers the chosen assignor first and the other as a
// fallback, so a group whose members disagree (during a rolling change of
// the setting) still forms with one both support.
func groupBalancers(strategy string) ([]kafka.GroupBalancer, error) {
	switch strategy {
	case "", "range":
		return []kafka.GroupBalancer{kafka.RangeGroupBalancer{}, kafka.RoundRobinGroupBalancer{}}, nil
	case "round-robin":
		return []kafka.GroupBalancer{kafka.RoundRobinGroupBalancer{}, kafka.RangeGroupBalancer{}}, nil
	case "cooperative-sticky":
		return nil, &ConfigError{Field: "rebalance strategy", Message: "cooperative-sticky is not supported: kafka-go's consumer rebalances eagerly (range or round-robin)"}
	}
	return nil, &ConfigError{Field: "rebalance strategy", Message: fmt.Sprintf("want range or round-robin, got %q", strategy)}
}

// kafkaLog adapts kafka-go's printf loggers. Its per-commit and idle-fetch
// lines go to Debug; group membership changes are rare and worth seeing.
func kafkaLog(l *slog.Logger) (kafka.Logger, kafka.Logger) {
	info := kafka.LoggerFunc(func(format string, args ...any) {
		msg := strings.TrimSpace(fmt.Sprintf(format, args...))
		level := slog.LevelInfo
		for _, chatty := range []string{"committed offsets", "no messages received", "started commit", "stopped commit"} {
			if strings.HasPrefix(msg, chatty) {
				level = slog.LevelDebug
			}
		}
		l.Log(context.Background(), level, "kafka consumer: "+msg)
	})
	warn := kafka.LoggerFunc(func(format string, args ...any) {
		l.Warn("kafka consumer: " + strings.TrimSpace(fmt.Sprintf(format, args...)))
	})
	return info, warn
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
	c.r = kafka.NewReader(c.rcfg)
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

// AssignedLag is, for each partition the group assigned to this consumer,
// how many messages the group has not committed (end of the partition minus
// committed offset). It asks the broker, so it is known right after joining,
// before any message is fetched. Empty while the consumer is not a member.
func (c *Consumer) AssignedLag(ctx context.Context) (map[int]int64, error) {
	offs, err := c.GroupOffsets(ctx)
	if err != nil {
		return nil, err
	}
	lags := map[int]int64{}
	for p, o := range offs {
		if o.Mine {
			lags[p] = o.Lag()
		}
	}
	return lags, nil
}

// PartitionOffsets is where the group stands on one partition.
type PartitionOffsets struct {
	// Committed is the group's committed offset; the partition's first
	// offset when the group has committed nothing there yet.
	Committed int64
	End       int64 // the offset the next message will get
	// Member is the client id of the group member the partition is
	// assigned to ("" when none is); Mine, whether that is this consumer.
	Member string
	Mine   bool
}

// Lag is how many messages of the partition the group has not committed.
func (o PartitionOffsets) Lag() int64 { return max(o.End-o.Committed, 0) }

// GroupOffsets is, for every partition of the topic (assigned to this
// consumer or not), where the group stands: a partition whose committed
// offset stays behind its end shows a group that stopped consuming it,
// whichever member should be.
func (c *Consumer) GroupOffsets(ctx context.Context) (map[int]PartitionOffsets, error) {
	md, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.cfg.Topic}})
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", c.cfg.Topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != c.cfg.Topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("partitions of %s: %w", c.cfg.Topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return map[int]PartitionOffsets{}, nil
	}
	offs, err := c.offsets(ctx, parts)
	if err != nil {
		return nil, err
	}
	dg, err := c.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{c.cfg.Group}})
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", c.cfg.Group, err)
	}
	for _, g := range dg.Groups {
		for _, m := range g.Members {
			for _, t := range m.MemberAssignments.Topics {
				if t.Topic != c.cfg.Topic {
					continue
				}
				for _, p := range t.Partitions {
					if o, ok := offs[p]; ok {
						o.Member, o.Mine = m.ClientID, m.ClientID == c.clientID
						offs[p] = o
					}
				}
			}
		}
	}
	return offs, nil
}

// offsets asks the broker for the group's committed offsets and the ends of
// parts.
func (c *Consumer) offsets(ctx context.Context, parts []int) (map[int]PartitionOffsets, error) {
	of, err := c.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: map[string][]int{c.cfg.Topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", c.cfg.Group, err)
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	lo, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{c.cfg.Topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", c.cfg.Topic, err)
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[c.cfg.Topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			committed[p.Partition] = p.CommittedOffset
		}
	}
	out := make(map[int]PartitionOffsets, len(parts))
	for _, p := range lo.Topics[c.cfg.Topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", c.cfg.Topic, p.Partition, p.Error)
		}
		from, ok := committed[p.Partition]
		if !ok { // nothing committed yet: the group starts at the oldest
			from = p.FirstOffset
		}
		out[p.Partition] = PartitionOffsets{Committed: from, End: p.LastOffset}
	}
	return out, nil
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close leaves the group.
func (c *Consumer) Close() error {
	err := c.reader().Close()
	closeIdle(c.client)
	return err
}
