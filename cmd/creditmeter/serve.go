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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/console"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/lowbalance"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

func newServeCmd() *cobra.Command {
	cfg := config.Default()
	var gc gcSettings
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the engine, the HTTP API and /metrics",
		Long: `serve runs creditmeter: the engine, which consumes usage events from the
topic --kafka-topic in the consumer group --kafka-group, rates them with the catalog,
draws their credits from the balances in Redis, archives every rated line and
ledger entry in ClickHouse and only then commits
the offsets; rejected events go to --kafka-dlq-topic. Beside it, the HTTP API
under /v1 (described at /v1/openapi.yaml; admin tokens from --admin-tokens),
/healthz and /readyz (Kafka, Redis and ClickHouse reachable and the engine not
stalled; checked at most once a second; the reasons only for an admin token).
/metrics for Prometheus has its own listener, --metrics-addr: its series name
customers and subscriptions, so keep it off public networks.

A service that is down at start or later is waited for: the engine stops
consuming, retries with backoff and resumes with nothing lost. SIGINT or
SIGTERM finish the batch in flight, commit it and exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := gc.apply(cmd.Flags()); err != nil {
				return err
			}
			return serve(cmd.Context(), cfg)
		},
	}
	bindGC(cmd.Flags(), &gc)
	withConfig(cmd, &cfg, config.GroupKafka, config.GroupRedis, config.GroupClickHouse, config.GroupHTTP, config.GroupEngine)
	return cmd
}

func serve(ctx context.Context, cfg config.Config) error {
	return serveOn(ctx, cfg, logger(), nil, nil)
}

// serveOn is serve with its logger and, when ln and mln are not nil, open
// listeners for the HTTP API and /metrics (the demo runs the service
// in-process on free ports).
func serveOn(ctx context.Context, cfg config.Config, log *slog.Logger, ln, mln net.Listener) error {
	routeRedisLogs(log)
	// Redis that lost acknowledged writes is repaired from the archive, by
	// the engine and by the API's write paths alike (app.OptionsOf).
	st, err := app.Connect(ctx, cfg, config.RedisTuning{})
	if err != nil {
		return err
	}
	defer st.Close()
	cat := followCatalog(ctx, st, log)
	defer cat.stop()
	cat.rater.SetGraceWindow(cfg.Engine.GraceWindow)
	bal, cc, conn, writer, repairer, acc := st.Balances, st.CC, st.Conn, st.Writer, st.Repairer, st.Accounts

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoMetric())
	metrics := engine.NewMetrics(reg)
	kconn, err := cfg.Kafka.Conn()
	if err != nil {
		return err
	}
	writers := ingest.NewWriters(cfg.Kafka.Brokers, cfg.Kafka.Topic, cfg.Kafka.DLQTopic, ingest.MaxMessageBytes(cfg.Kafka.MaxMessageBytes),
		ingest.WithLogger(log), ingest.OnDeadLetterDropped(metrics.DeadLetterDropped), ingest.WithConn(kconn))
	defer writers.Close()
	// Webhooks: every node emits to the Redis outbox and dispatches from it.
	hooks, dispatcher, notifier, err := newWebhooks(cat, bal, cfg, log)
	if err != nil {
		return err
	}
	acc.Observer = observers{accounts.NewAccountMetrics(reg, metrics.LowCrossings), notifier}
	acc.Payments = notifier
	bg, err := newJobs(cat.rc, cfg.Engine.KeyPrefix)
	if err != nil {
		return err
	}
	bg.rechargeMetrics = accounts.NewRechargeMetrics(reg)
	// Only the low-balance lease holder reads and exports the low balances.
	reg.MustRegister(lowbalance.NewCollector(bal, subscriptionLabels(cat.store), lowbalance.Options{Active: bg.low.MayHold}))

	// Every mode archives (the API archives the ledger entries of top-ups,
	// adjustments and included credits), so every mode creates the tables:
	// once here, so the first request finds them, then in the background
	// while ClickHouse is unreachable.
	schema := &archiveSchema{done: make(chan struct{})}
	mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
	migrateErr := archive.Migrate(mctx, cc)
	mcancel()
	if errors.Is(migrateErr, archive.ErrUnsupportedServer) || errors.Is(migrateErr, archive.ErrBadCluster) {
		return migrateErr
	}
	if migrateErr == nil {
		close(schema.done)
	}

	run := &engineRun{}
	health := &readiness{ttl: time.Second, check: func(ctx context.Context) error {
		// The live clients, not new ones: a probe costs at most one check per ttl.
		errs := []error{
			named("kafka", kconn.Ping(ctx)),
			named("redis", cat.rc.Ping(ctx).Err()),
			named("clickhouse", conn.Ping(ctx)),
			schema.ready(),
		}
		if cfg.Engine.Enabled {
			errs = append(errs, run.ready())
		}
		return errors.Join(errs...)
	}}
	handler := api.NewServer(api.Options{Ready: health.ready, Catalog: cat.store, Ledger: acc, Balances: acc,
		Events: writers, Reports: archive.Reports{Conn: conn}, AdminTokens: cfg.HTTP.AdminTokens, Logger: log,
		MaxFutureSkew: cfg.Engine.MaxFutureSkew, Metrics: reg, Webhooks: hooks, PaymentSecret: cfg.HTTP.PaymentCallbackSecret,
		DeadLetters: ingest.DeadLetterReader{Conn: kconn, Topic: cfg.Kafka.DLQTopic, Replayed: replayedAt(cat.rc, cfg.Engine.KeyPrefix, cfg.Kafka.DLQTopic)}})
	mux := http.NewServeMux()
	mux.Handle("/console/", console.Handler()) // the web console, over the same API
	mux.Handle("/console", console.Handler())
	mux.Handle("/", handler)
	srv := newHTTPServer(mux)
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return fmt.Errorf("setting --http-addr (%s): %w", config.EnvName("http-addr"), err)
		}
	}
	// /metrics names customers and subscriptions: it has its own listener,
	// kept off the public API.
	mmux := http.NewServeMux()
	mmux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	msrv := newHTTPServer(mmux)
	if mln == nil {
		if mln, err = net.Listen("tcp", cfg.HTTP.MetricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("setting --metrics-addr (%s): %w", config.EnvName("metrics-addr"), err)
		}
	}
	log.Info("serving", "http", "http://"+ln.Addr().String(), "metrics", "http://"+mln.Addr().String()+"/metrics", "engine", cfg.Engine.Enabled)
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- msrv.Serve(mln) }()

	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if migrateErr != nil {
		log.Warn("archive tables not created yet; retrying", "err", migrateErr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if retryWait(engineCtx, log, schema.wait, "creating the archive tables in ClickHouse", func(ctx context.Context) error { return archive.Migrate(ctx, cc) }) {
				close(schema.done)
			}
		}()
	}
	bg.start(engineCtx, &wg, conn, cat.store, acc, hooks, notifier, log) // rollup refresh, expiry sweep, low-set repair: once per deployment
	wg.Add(1)
	go func() { defer wg.Done(); dispatcher.Run(engineCtx) }()
	if cfg.Engine.Enabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.start(engineCtx, cfg, cat, schema, bal, repairer, writer, writers, metrics, notifier, log); err != nil {
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
	return errors.Join(err, srv.Shutdown(sctx), msrv.Shutdown(sctx))
}

func named(service string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", service, err)
	}
	return nil
}

// readiness caches a readiness check for ttl, so any number of probes cost
// one check per ttl; concurrent probes wait for the check in flight.
type readiness struct {
	ttl   time.Duration
	check func(context.Context) error

	mu  sync.Mutex
	at  time.Time
	err error
}

func (r *readiness) ready(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < r.ttl {
		return r.err
	}
	// Not the caller's context: a cancelled probe must not cache a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.err = r.check(ctx)
	r.at = time.Now()
	return r.err
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
func (r *engineRun) start(ctx context.Context, cfg config.Config, cat *catalog, schema *archiveSchema, bal *balance.Store,
	repairer engine.Repairer, writer *archive.Writer, writers *ingest.Writers, metrics *engine.Metrics, notifier *webhook.Notifier, log *slog.Logger) error {
	kconn, err := cfg.Kafka.Conn()
	if err != nil {
		return err
	}
	// Waiting for a service at start is backpressure like any later outage,
	// so EngineBackpressure fires for a serve that never gets going.
	retry := func(what string, f func(context.Context) error) bool {
		r.wait(what)
		for delay := 100 * time.Millisecond; ; delay = min(delay*2, 5*time.Second) {
			err := f(ctx)
			if err == nil {
				metrics.Backpressure.Set(0)
				return true
			}
			metrics.Backpressure.Set(1)
			log.Warn("engine waiting", "for", what, "err", err)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(delay):
			}
		}
	}
	if !retry("reaching Kafka", kconn.Ping) {
		return nil
	}
	if !retry("loading the catalog from Redis", func(ctx context.Context) error { _, err := cat.store.Refresh(ctx, cat.rater); return err }) {
		return nil
	}
	if !retry("creating the archive tables in ClickHouse", func(ctx context.Context) error {
		select {
		case <-schema.done:
			return nil
		case <-time.After(time.Second):
			return schema.ready()
		}
	}) {
		return nil
	}
	src, err := ingest.NewConsumer(ingest.ConsumerConfig{Conn: kconn, Topic: cfg.Kafka.Topic, Group: cfg.Kafka.Group,
		SessionTimeout: cfg.Kafka.Consumer.SessionTimeout, HeartbeatInterval: cfg.Kafka.Consumer.HeartbeatInterval, RebalanceTimeout: cfg.Kafka.Consumer.RebalanceTimeout,
		RebalanceStrategy: cfg.Kafka.Consumer.RebalanceStrategy, Logger: log})
	if err != nil {
		return err
	}
	defer src.Close()
	e, err := engine.New(engine.Config{
		Topic: cfg.Kafka.Topic, BatchSize: cfg.Engine.BatchSize, Linger: cfg.Engine.Linger, Logger: log, Metrics: metrics, MaxFutureSkew: cfg.Engine.MaxFutureSkew,
		Refresh: func(ctx context.Context) error { _, _, err := cat.store.Sync(ctx, cat.rater); return err },
		CustomerExists: func(ctx context.Context, id string) bool {
			_, err := cat.store.Customer(ctx, id)
			return err == nil
		},
		Repair:        repairer,
		RedisIdentity: bal.Identity,
		WaitReplicas:  waitReplicas(bal, cfg.Engine.MinReplicas, cfg.Engine.WaitTimeout),
		Notify:        notifyBatches(notifier),
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
func subscriptionLabels(st *catalogstore.Store) lowbalance.SubscriptionLabels {
	return func(ctx context.Context, id string) (string, string, error) {
		s, err := st.Subscription(ctx, id)
		if err != nil {
			return "", "", err
		}
		return s.CustomerID, s.PlanID, nil
	}
}

// httpLimits bound what one connection may hold: a body must arrive within
// Read, a response be written within Write (reports and event batches take
// seconds, not minutes), an idle keep-alive is closed after Idle, and request
// headers stay under MaxHeaderBytes.
var httpLimits = struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
}{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 120 * time.Second, MaxHeaderBytes: 64 << 10}

func newHTTPServer(h http.Handler) *http.Server {
	l := httpLimits
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read, WriteTimeout: l.Write,
		IdleTimeout: l.Idle, MaxHeaderBytes: l.MaxHeaderBytes}
}

// retryWait calls f with backoff until it succeeds (true) or ctx ends (false),
// telling wait what it waits for.
func retryWait(ctx context.Context, log *slog.Logger, wait func(string), what string, f func(context.Context) error) bool {
	wait(what)
	for delay := 100 * time.Millisecond; ; delay = min(delay*2, 5*time.Second) {
		err := f(ctx)
		if err == nil {
			return true
		}
		log.Warn("waiting", "for", what, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}

// archiveSchema is whether serve has created the archive tables yet.
type archiveSchema struct {
	done    chan struct{}
	mu      sync.Mutex
	waiting string
}

func (a *archiveSchema) wait(what string) {
	a.mu.Lock()
	a.waiting = what
	a.mu.Unlock()
}

func (a *archiveSchema) ready() error {
	select {
	case <-a.done:
		return nil
	default:
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Errorf("archive not ready: %s", a.waiting)
}

// waitReplicas is the engine's WAIT before commits, nil when no replica is
// required.
func waitReplicas(bal *balance.Store, n int, timeout time.Duration) func(context.Context) error {
	if n <= 0 {
		return nil
	}
	return func(ctx context.Context) error { return bal.WaitReplicas(ctx, n, timeout) }
}
