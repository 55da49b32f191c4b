// Package ingest is creditmeter's intake: Kafka topics, the event schema, and
// the dead-letter queue, written by the engine (SendDLQ) and read back by
// GET /v1/dead-letters and dlq replay (DeadLetterReader).
package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// TopicStatus says what EnsureTopics found or did for one topic.
type TopicStatus struct {
	Topic      string
	Partitions int
	Created    bool
}

// EnsureTopics creates each topic that does not exist with the given partition
// count. An existing topic is left as it is (its partition count is reported):
// changing it would move keys between partitions.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) ([]TopicStatus, error) {
	return Plain(brokers...).EnsureTopics(ctx, partitions, topics...)
}

// EnsureTopics is EnsureTopics over the Conn (TLS, SASL).
func (c Conn) EnsureTopics(ctx context.Context, partitions int, topics ...string) ([]TopicStatus, error) {
	if len(c.Brokers) == 0 {
		return nil, errors.New("ensure topics: no brokers")
	}
	if partitions < 1 {
		return nil, fmt.Errorf("ensure topics: partitions must be >= 1, got %d", partitions)
	}
	client := c.Client(0)
	defer closeIdle(client)
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("ensure topics: create: %w", c.explain(err))
	}
	created := map[string]bool{}
	for t, terr := range resp.Errors {
		switch {
		case terr == nil:
			created[t] = true
		case errors.Is(terr, kafka.TopicAlreadyExists):
		default:
			return nil, fmt.Errorf("ensure topics: create %q: %w", t, terr)
		}
	}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("ensure topics: metadata: %w", err)
	}
	byName := map[string]kafka.Topic{}
	for _, t := range md.Topics {
		byName[t.Name] = t
	}
	out := make([]TopicStatus, 0, len(topics))
	for _, name := range topics {
		t, ok := byName[name]
		if !ok || t.Error != nil {
			return nil, fmt.Errorf("ensure topics: %q missing after create: %v", name, t.Error)
		}
		out = append(out, TopicStatus{Topic: name, Partitions: len(t.Partitions), Created: created[name]})
	}
	return out, nil
}

// Ping is Conn.Ping over plaintext without authentication.
func Ping(ctx context.Context, brokers []string) error { return Plain(brokers...).Ping(ctx) }
