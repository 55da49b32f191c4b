package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/console"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/doctor"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func newServeCmd() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the engine, the HTTP API and /metrics",
		Long: `serve runs creditmeter: the engine, which consumes usage events from the
topic --kafka-topic in the consumer group --kafka-group, rates them with the catalog,
draws their credits from the balances in Redis, archives every rated line and
ledger entry in ClickHouse (creating its tables at start) and only then commits
the offsets; rejected events go to --kafka-dlq-topic. Beside it, the HTTP API
under /v1 (described at /v1/openapi.yaml; admin tokens from --admin-tokens),
/healthz, /readyz (Kafka, Redis and ClickHouse reachable and the engine not
stalled) and /metrics for Prometheus.

A service that is down at start or later is waited for: the engine stops
consuming, retries with backoff and resumes with nothing lost. SIGINT or
SIGTERM finish the batch in flight, commit it and exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return serve(cmd.Context(), cfg) },
	}
	withConfig(cmd, &cfg, config.GroupKafka, config.GroupRedis, config.GroupClickHouse, config.GroupHTTP, config.GroupEngine)
	return cmd
}

func serve(ctx context.Context, cfg config.Config) error { return serveOn(ctx, cfg, logger(), nil) }

// serveOn is serve with its logger and, when ln is not nil, an open listener
// for the HTTP API (the demo runs the service in-process on a free port).
func serveOn(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener) error {
	cat, err := openCatalog(ctx, cfg.Redis, cfg.Engine.KeyPrefix, log)
	if err != nil {
		return err
	}
	defer cat.stop()
	bal, err := balance.New(cat.rc, balance.Options{Prefix: cfg.Engine.KeyPrefix, DedupeWindow: cfg.Engine.DedupeWindow, GraceWindow: cfg.Engine.GraceWindow})
	if err != nil {
		return err
	}
	cc := archive.ConnConfig{Addr: cfg.ClickHouse.Addr, Database: cfg.ClickHouse.Database, User: cfg.ClickHouse.User, Password: cfg.ClickHouse.Password}
	conn, err := archive.Connect(cc)
	if err != nil {
		return err
	}
	defer conn.Close()
	writer := archive.NewWriter(conn)
	writers := ingest.NewWriters(cfg.Kafka.Brokers, cfg.Kafka.Topic, cfg.Kafka.DLQTopic)
	defer writers.Close()
	accounts := &engine.Accounts{Store: bal, Archive: writer}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := engine.NewMetrics(reg)
	accounts.Observer = engine.NewAccountMetrics(reg, metrics)
	bg, err := newJobs(cat.rc, cfg.Engine.KeyPrefix)
	if err != nil {
		return err
	}
	// Only the low-balance lease holder reads and exports the low balances.
	reg.MustRegister(engine.NewLowBalanceCollector(bal, subscriptionLabels(cat.store), engine.LowBalanceOptions{Active: bg.low.MayHold}))

	run := &engineRun{}
	ready := func(ctx context.Context) error {
		var errs []error
		for _, r := range doctor.Check(ctx, cfg, "kafka", "redis", "clickhouse") {
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", r.Service, r.Addr, r.Err))
			}
		}
		if cfg.Engine.Enabled {
			errs = append(errs, run.ready())
		}
		return errors.Join(errs...)
	}
	handler := api.NewServer(api.Options{Ready: ready, Gatherer: reg, Catalog: cat.store, Ledger: accounts, Balances: accounts,
		Events: writers, Reports: archive.Reports{Conn: conn}, AdminTokens: cfg.HTTP.AdminTokens, Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/console/", console.Handler()) // the web console, over the same API
	mux.Handle("/console", console.Handler())
	mux.Handle("/", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return fmt.Errorf("setting --http-addr (%s): %w", config.EnvName("http-addr"), err)
		}
	}
	log.Info("serving", "http", "http://"+ln.Addr().String(), "engine", cfg.Engine.Enabled)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	bg.start(engineCtx, &wg, conn, cat.store, accounts, log) // rollup refresh, expiry sweep, low-set repair: once per deployment
	if cfg.Engine.Enabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.start(engineCtx, cfg, cat, cc, bal, writer, writers, metrics, log); err != nil {
				errc <- fmt.Errorf("engine: %w", err)
			}
		}()
	}

	select {
	case err = <-errc:
		log.Error("stopping", "err", err)
	case <-ctx.Done():
		log.Info("shutting down: finishing the batch in flight")
	}
	stopEngine()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(sctx))
}

// engineRun starts the engine once its dependencies are there, and reports
// readiness meanwhile.
type engineRun struct {
	mu      sync.Mutex
	waiting string
	e       *engine.Engine
}

func (r *engineRun) ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.e == nil {
		return fmt.Errorf("engine starting: %s", r.waiting)
	}
	if err := r.e.Ready(); err != nil {
		return fmt.Errorf("engine stalled, not consuming: %w", err)
	}
	return nil
}

func (r *engineRun) wait(what string) {
	r.mu.Lock()
	r.waiting = what
	r.mu.Unlock()
}

// start waits for the catalog and the archive schema, then runs the engine
// until ctx ends.
func (r *engineRun) start(ctx context.Context, cfg config.Config, cat *catalog, cc archive.ConnConfig, bal *balance.Store,
	writer *archive.Writer, writers *ingest.Writers, metrics *engine.Metrics, log *slog.Logger) error {
	retry := func(what string, f func(context.Context) error) bool {
		r.wait(what)
		for delay := 100 * time.Millisecond; ; delay = min(delay*2, 5*time.Second) {
			err := f(ctx)
			if err == nil {
				return true
			}
			log.Warn("engine waiting", "for", what, "err", err)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(delay):
			}
		}
	}
	if !retry("loading the catalog from Redis", func(ctx context.Context) error { _, err := cat.store.Refresh(ctx, cat.rater); return err }) {
		return nil
	}
	if !retry("creating the archive tables in ClickHouse", func(ctx context.Context) error { return archive.Migrate(ctx, cc) }) {
		return nil
	}
	src := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.Topic, Group: cfg.Kafka.Group})
	defer src.Close()
	e, err := engine.New(engine.Config{
		Topic: cfg.Kafka.Topic, BatchSize: cfg.Engine.BatchSize, Linger: cfg.Engine.Linger, Logger: log, Metrics: metrics,
		Refresh: func(ctx context.Context) error { _, _, err := cat.store.Sync(ctx, cat.rater); return err },
		CustomerExists: func(ctx context.Context, id string) bool {
			_, err := cat.store.Customer(ctx, id)
			return err == nil
		},
	}, src, writers, cat.rater, bal, writer)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.e = e
	r.mu.Unlock()
	log.Info("engine consuming", "topic", cfg.Kafka.Topic, "group", cfg.Kafka.Group, "brokers", cfg.Kafka.Brokers)
	return e.Run(ctx)
}

// subscriptionLabels labels the low-balance series with the catalog's
// customer and plan of a subscription.
func subscriptionLabels(st *catalogstore.Store) engine.SubscriptionLabels {
	return func(ctx context.Context, id string) (string, string, error) {
		s, err := st.Subscription(ctx, id)
		if err != nil {
			return "", "", err
		}
		return s.CustomerID, s.PlanID, nil
	}
}
