package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
)

func deleteTopics(ctx context.Context, conn ingest.Conn, topics []string) error {
	if len(conn.Brokers) == 0 {
		return errNoBrokers
	}
	c := conn.Client(0)
	_, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	return err
}

// producer sends chunks of messages with a few concurrent synchronous
// writers (acks=all, lz4, keyed by customer and partitioned as ingest.Writers does).
type producer struct {
	w     *kafka.Writer
	ch    chan []kafka.Message
	wg    sync.WaitGroup
	sent  atomic.Int64
	errMu sync.Mutex
	err   error
}

func newProducer(conn ingest.Conn, topic string, workers int) *producer {
	p := &producer{
		w: &kafka.Writer{
			Addr: kafka.TCP(conn.Brokers...), Transport: conn.Transport(), Topic: topic, Balancer: ingest.Balancer(), RequiredAcks: kafka.RequireAll,
			BatchSize: 2000, BatchBytes: 16 << 20, BatchTimeout: 2 * time.Millisecond, Compression: kafka.Lz4,
		},
		ch: make(chan []kafka.Message, workers*2),
	}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for msgs := range p.ch {
				if err := p.w.WriteMessages(context.Background(), msgs...); err != nil {
					p.errMu.Lock()
					p.err = errors.Join(p.err, err)
					p.errMu.Unlock()
					continue
				}
				p.sent.Add(int64(len(msgs)))
			}
		}()
	}
	return p
}

// send queues a chunk; it blocks when every writer is busy (the producer is
// then the limit, which the caller can see as falling behind its rate).
func (p *producer) send(msgs []kafka.Message) { p.ch <- msgs }

func (p *producer) close() error {
	close(p.ch)
	p.wg.Wait()
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return errors.Join(p.err, p.w.Close())
}

// countingSource wraps the engine's source and counts committed messages.
type countingSource struct {
	engine.Source
	committed atomic.Int64
	fetched   atomic.Int64
	fetches   atomic.Int64
	// time spent, ns
	tFetch, tCommit atomic.Int64
	// noCommit drops commits (counted, not sent): an engine that crashes
	// after its balance and archive writes, before any offset is committed.
	noCommit bool
}

// Rewind starts the consumer again from the committed offsets, as after a
// repair of lost Redis writes.
func (s *countingSource) Rewind(ctx context.Context) error {
	rw, ok := s.Source.(engine.Rewinder)
	if !ok {
		return fmt.Errorf("bench: the source cannot rewind")
	}
	return rw.Rewind(ctx)
}

func (s *countingSource) Fetch(ctx context.Context, max int, linger time.Duration) ([]kafka.Message, error) {
	t0 := time.Now()
	m, err := s.Source.Fetch(ctx, max, linger)
	s.tFetch.Add(int64(time.Since(t0)))
	s.fetched.Add(int64(len(m)))
	s.fetches.Add(1)
	return m, err
}

func (s *countingSource) Commit(ctx context.Context, msgs []kafka.Message) error {
	t0 := time.Now()
	if s.noCommit {
		s.committed.Add(int64(len(msgs)))
		return nil
	}
	if err := s.Source.Commit(ctx, msgs); err != nil {
		return err
	}
	s.tCommit.Add(int64(time.Since(t0)))
	s.committed.Add(int64(len(msgs)))
	return nil
}
