// Package bench measures creditmeter on the real services, every figure beside
// the raw limit of the same machine measured in the same run: end-to-end
// throughput (Kafka → Redis → ClickHouse), freshness (event produced →
// balance updated), the raw limits of kafka-go, Redis Lua and ClickHouse with
// the naive one-call-per-event baseline, Redis memory per remembered event id
// and per subscription, engine RSS over a long run, and the latency of the
// balance and check API. `creditmeter bench` runs it; see README.md.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/broker"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// World is one isolated benchmark world on the real services: a Redis key
// prefix, a ClickHouse database and topics of its own, the seed catalog and
// the customers' subscriptions. Close removes it.
type World struct {
	Run      string // random id of the run, in every name below
	Brokers  []string
	Kafka    ingest.Conn // how the bench's Kafka clients connect: Brokers, TLS, SASL
	RC       redis.UniversalClient
	Prefix   string
	Conn     driver.Conn
	CC       archive.ConnConfig
	Catalog  *catalogstore.Store
	Balances *balance.Store
	Writer   *archive.Writer
	Accounts *accounts.Accounts
	Subs     []string        // subscription id of customer i
	Custs    []string        // customer i
	Initial  []credit.Amount // credits granted to subscription i at provisioning
	// Want is what the e2e drains so far must have drawn, by subscription:
	// the Redis balances and the ledger are cumulative over them.
	Want   []Usage
	Keep   bool      // keep the data on Close (for inspection)
	Seeded time.Time // when the last subscription started

	log     *slog.Logger
	topics  []string
	groups  []string
	embed   *broker.Broker
	tmpDirs []string
}

// WorldConfig says where the services are.
type WorldConfig struct {
	Brokers    []string    // empty: an embedded broker in this process
	Kafka      ingest.Conn // TLS and SASL to Brokers (its own brokers are ignored)
	Partitions int
	Redis      config.Redis // --redis-addr and friends: standalone, cluster or sentinel
	CHAddr     string
	CHUser     string
	CHPassword string
	Customers  int
	Logger     *slog.Logger
	Keep       bool
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewWorld connects the services and provisions the catalog and n customers,
// each with one subscription; every fifth is on the overage plan with a
// small grant (its balance goes negative), the rest have 1,000,000 AIT of
// promotional credits on the unfunded plan.
func NewWorld(ctx context.Context, c WorldConfig) (w *World, err error) {
	w = &World{Run: randomID(), Keep: c.Keep, log: c.Logger}
	if w.log == nil {
		w.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if len(c.Brokers) == 0 {
		dir, err := os.MkdirTemp("", "creditmeter-bench-broker-")
		if err != nil {
			return w, err
		}
		w.tmpDirs = append(w.tmpDirs, dir)
		w.embed, err = broker.Start(ctx, broker.Options{Listen: "127.0.0.1:0", DataDir: dir, Partitions: c.Partitions,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
		if err != nil {
			return w, err
		}
		c.Brokers = []string{w.embed.Addr()}
	}
	w.Brokers = c.Brokers
	w.Kafka = c.Kafka
	w.Kafka.Brokers = c.Brokers
	rc, conn, err := config.NewRedisClient(c.Redis, config.RedisTuning{PoolSize: 64})
	if err != nil {
		return w, err
	}
	w.RC = rc
	if err := w.RC.Ping(ctx).Err(); err != nil {
		return w, fmt.Errorf("redis %s: %w", conn, err)
	}
	w.Prefix = "bench:" + w.Run + ":"
	w.CC = archive.ConnConfig{Addr: c.CHAddr, User: c.CHUser, Password: c.CHPassword, Database: "bench_" + w.Run}
	if err := archive.EnsureDatabase(ctx, w.CC); err != nil {
		return w, fmt.Errorf("clickhouse %s: %w", c.CHAddr, err)
	}
	if w.Conn, err = archive.Open(ctx, w.CC); err != nil {
		return w, err
	}
	if err := archive.Migrate(ctx, w.CC); err != nil {
		return w, err
	}
	st, err := app.New(w.RC, w.Conn, w.CC, app.Options{Balance: balance.Options{Prefix: w.Prefix, GraceWindow: 15 * time.Minute}})
	if err != nil {
		return w, err
	}
	w.Catalog, w.Balances, w.Writer, w.Accounts = st.Catalog, st.Balances, st.Writer, st.Accounts
	if err := seed.Catalog(ctx, w.Catalog); err != nil {
		return w, err
	}
	// Provisioning archives each subscription's grant entry: one ClickHouse
	// insert each would take most of the set-up, so they are collected and
	// inserted at once.
	buf := &ledgerBuffer{}
	prov := &accounts.Accounts{Store: w.Balances, Archive: buf}
	// Subscriptions are created concurrently: each is a few round trips.
	w.Custs = make([]string, c.Customers)
	w.Subs = make([]string, c.Customers)
	w.Initial = make([]credit.Amount, c.Customers)
	w.Want = make([]Usage, c.Customers)
	errc := make(chan error, c.Customers)
	sem := make(chan struct{}, 16)
	for i := range c.Customers {
		w.Custs[i] = fmt.Sprintf("cust-%05d", i)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			s := seed.Subscription{Customer: w.Custs[i], Plan: seed.PlanUnfunded, Included: "1000000"}
			if i%5 == 4 {
				s.Plan, s.Included = seed.PlanOverage, "50"
			}
			w.Initial[i] = credit.MustParse(s.Included)
			id, err := seed.Subscribe(ctx, w.Catalog, prov, s)
			w.Subs[i] = id
			errc <- err
		}(i)
	}
	for range c.Customers {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	w.Seeded = time.Now()
	if err != nil {
		return w, err
	}
	return w, w.Writer.WriteLedger(ctx, buf.rows)
}

// ledgerBuffer collects ledger rows instead of inserting them.
type ledgerBuffer struct {
	mu   sync.Mutex
	rows []archive.LedgerRow
}

func (b *ledgerBuffer) WriteUsage(context.Context, []archive.RatedRow) error { return nil }

func (b *ledgerBuffer) WriteLedger(_ context.Context, rows []archive.LedgerRow) error {
	b.mu.Lock()
	b.rows = append(b.rows, rows...)
	b.mu.Unlock()
	return nil
}

// Topic creates a fresh usage topic (and its DLQ) of the run.
func (w *World) Topic(ctx context.Context, name string, partitions int) (topic, dlq string, err error) {
	topic, dlq = "bench-"+w.Run+"-"+name, "bench-"+w.Run+"-"+name+"-dlq"
	if _, err = w.Kafka.EnsureTopics(ctx, partitions, topic, dlq); err != nil {
		return "", "", err
	}
	w.topics = append(w.topics, topic, dlq)
	return topic, dlq, nil
}

// Group is a fresh consumer group name of the run.
func (w *World) Group(name string) string {
	g := "bench-" + w.Run + "-" + name
	w.groups = append(w.groups, g)
	return g
}

// Rater is a rater loaded with the world's catalog.
func (w *World) Rater(ctx context.Context) (*rating.Rater, error) {
	r := rating.NewRater(nil)
	_, err := w.Catalog.Refresh(ctx, r)
	return r, err
}

// Close removes the world's Redis keys, ClickHouse database and topics, and
// stops an embedded broker.
func (w *World) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !w.Keep {
		if w.RC != nil && w.Prefix != "" {
			_ = eachMaster(ctx, w.RC, func(ctx context.Context, n redis.Cmdable) error {
				iter := n.Scan(ctx, 0, w.Prefix+"*", 5000).Iterator()
				var keys []string
				unlink := func() {
					// One key per command in a pipeline: a cluster refuses multi-key commands across slots.
					pipe := n.Pipeline()
					for _, k := range keys {
						pipe.Unlink(ctx, k)
					}
					_, _ = pipe.Exec(ctx)
					keys = keys[:0]
				}
				for iter.Next(ctx) {
					if keys = append(keys, iter.Val()); len(keys) == 5000 {
						unlink()
					}
				}
				unlink()
				return iter.Err()
			})
		}
		if w.Conn != nil && strings.HasPrefix(w.CC.Database, "bench_") {
			_ = w.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+w.CC.Database)
		}
		if w.embed == nil && len(w.topics) > 0 {
			_ = deleteTopics(ctx, w.Kafka, w.topics)
		}
	}
	if w.Conn != nil {
		w.Conn.Close()
	}
	if w.RC != nil {
		w.RC.Close()
	}
	if w.embed != nil {
		w.embed.Close()
	}
	for _, d := range w.tmpDirs {
		_ = os.RemoveAll(d)
	}
}

var errNoBrokers = errors.New("no brokers")
