// Package engine wires the hot path: Kafka → decode → rate → balance (Redis)
// → archive (ClickHouse) → commit. Offsets are committed only after the
// balance change, the archive rows and the dead letters are durable, so a
// crash at any point replays from the last commit; the balance store's
// offset watermarks and event-id dedupe make the replay change nothing twice.
// The balance changes made outside the pipeline (top-ups, adjustments, the
// expiry sweep) are package accounts', whose ledger-row mapping the engine
// shares; the low-balance metrics are package lowbalance's.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/rating"
)

// Source is the usage topic in a consumer group.
type Source interface {
	Fetch(ctx context.Context, max int, linger time.Duration) ([]kafka.Message, error)
	Commit(ctx context.Context, msgs []kafka.Message) error
}

// LagSource is a Source that can tell the lag of the partitions assigned to
// it (ingest.Consumer); the engine exports it even when no message arrives.
type LagSource interface {
	AssignedLag(ctx context.Context) (map[int]int64, error)
}

// DeadLetters receives the messages that cannot be rated.
type DeadLetters interface {
	SendDLQ(ctx context.Context, dls []ingest.DeadLetter) error
}

// Rater rates an event into lines (rating.Rater).
type Rater interface {
	Rate(ev *rating.Event, dst []rating.Line) ([]rating.Line, error)
}

// Balances applies usage to prepaid balances (balance.Store).
type Balances interface {
	Apply(ctx context.Context, batches []balance.Batch) ([]balance.BatchResult, error)
}

// Archive stores rated lines and ledger entries (archive.Writer).
type Archive interface {
	WriteUsage(ctx context.Context, rows []archive.RatedRow) error
	WriteLedger(ctx context.Context, rows []archive.LedgerRow) error
}

// Config tunes the engine; zero values take the defaults.
type Config struct {
	Topic     string        // usage topic, for the balance watermarks (default usage-events)
	BatchSize int           // messages per batch (default 20000)
	Linger    time.Duration // longest wait to fill a batch (default 20ms)
	RetryMin  time.Duration // first retry delay when a service fails (default 50ms)
	RetryMax  time.Duration // longest retry delay (default 5s)
	// DrainTimeout bounds how long shutdown waits for the batch in flight (default 30s).
	DrainTimeout time.Duration
	// LagInterval is how often the lag of the assigned partitions is read
	// from the broker when the Source is a LagSource (default 5s).
	LagInterval time.Duration
	Logger      *slog.Logger
	Metrics     *Metrics // nil: no metrics
	// Now is the clock of rated_at and of the future-skew check; nil means time.Now.
	Now func() time.Time
	// MaxFutureSkew is how far ahead of Now an event may be stamped; beyond
	// it the event is dead-lettered invalid (default ingest.DefaultMaxFutureSkew).
	MaxFutureSkew time.Duration
	// Refresh brings the rater up to date with the catalog; the engine calls
	// it before dead-lettering events of subscriptions it does not know.
	Refresh func(ctx context.Context) error
	// CustomerExists tells an unknown customer from one without an active
	// subscription, for the dead-letter reason; nil reports the latter.
	CustomerExists func(ctx context.Context, id string) bool
	// Repair, when set, finds subscriptions whose Redis state lost
	// acknowledged writes (at start, whenever RedisIdentity changes, when a
	// ledger is behind what the engine saw, and when the archive refuses a
	// reused seq) and repairs them before applying more.
	Repair Repairer
	// RedisIdentity names the Redis nodes in service (run ids and
	// replication ids); a change means a restart or a failover, which may
	// have lost writes. Nil: checked at start only.
	RedisIdentity func(ctx context.Context) (string, error)
	// RedisCheckEvery is how often an engine waiting for messages checks
	// the Redis identity (and, at start, every subscription), so lost
	// writes are repaired without waiting for the next event (default 1s;
	// one INFO per master).
	RedisCheckEvery time.Duration
	// StuckAfter is how long a member whose partitions have messages may
	// fetch nothing before it rejoins the group (default 2m; needs a Source
	// that reports its lag and can rewind).
	StuckAfter time.Duration
	// WaitReplicas, when set, returns once enough Redis replicas hold the
	// balance changes made so far (balance.Store.WaitReplicas); a batch's
	// offsets are committed only after it, so a failover loses nothing
	// committed. Its errors are retried as backpressure.
	WaitReplicas func(ctx context.Context) error
	// Notify, when set, hears of every applied batch's results before its
	// offsets are committed (webhooks: low-balance crossings, exhaustion,
	// breakage); its errors are retried as backpressure, so it must be
	// idempotent.
	Notify func(ctx context.Context, results []balance.BatchResult) error
}

// Engine runs the pipeline of one consumer-group member.
type Engine struct {
	cfg     Config
	src     Source
	dlq     DeadLetters
	rater   Rater
	bal     Balances
	archive Archive
	log     *slog.Logger
	m       *Metrics
	grace   time.Duration // the balance store's grace window, for draw times

	mu      sync.Mutex
	stalled error // the failure being retried, nil when flowing
	// checkMu serialises checkRedis (the batch path and watchRedis).
	checkMu sync.Mutex

	// Reused between batches: the hot path allocates per batch, not per event.
	events []rating.Event
	lines  []rating.Line
	dec    decimals // archive Decimals of repeated quantities and money values
	nextMu sync.Mutex
	next   map[int]int64 // per partition, the offset after the last one committed
	// firstSeen is, per partition, the first offset fetched (prepare's
	// goroutine only).
	firstSeen map[int]int64
	// seen is, per subscription, the highest ledger seq a batch returned
	// (prepare's goroutine, or Run between two runs): Redis behind it lost
	// writes. identity is the Redis nodes verified against the archive.
	seen     map[string]int64
	identity string
	verified bool
	// progress is when a batch was last fetched or finished (unix ns);
	// inflight counts batches fetched and not yet finished.
	progress atomic.Int64
	inflight atomic.Int32
	// rejoin asks the produce stage to rejoin the group between two batches;
	// marks is watchGroup's view of the group's commits.
	rejoin      atomic.Bool
	marks       map[int]groupMark
	fetchFailed atomic.Bool
}

// ErrConfig is returned by New for missing dependencies or bad settings.
var ErrConfig = errors.New("engine: bad configuration")

// New validates its dependencies and builds an engine.
func New(cfg Config, src Source, dlq DeadLetters, r Rater, b Balances, a Archive) (*Engine, error) {
	if src == nil || dlq == nil || r == nil || b == nil || a == nil {
		return nil, fmt.Errorf("%w: source, dead letters, rater, balances and archive are all required", ErrConfig)
	}
	if cfg.BatchSize < 0 || cfg.Linger < 0 || cfg.RetryMin < 0 || cfg.RetryMax < 0 || cfg.MaxFutureSkew < 0 {
		return nil, fmt.Errorf("%w: negative batch size, linger, retry delay or future skew", ErrConfig)
	}
	if cfg.MaxFutureSkew == 0 {
		cfg.MaxFutureSkew = ingest.DefaultMaxFutureSkew
	}
	if cfg.Topic == "" {
		cfg.Topic = "usage-events"
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 20000
	}
	if cfg.Linger == 0 {
		cfg.Linger = 20 * time.Millisecond
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 50 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = 2 * time.Minute
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = 5 * time.Second
	}
	if cfg.RedisCheckEvery <= 0 {
		cfg.RedisCheckEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var grace time.Duration
	if g, ok := b.(interface{ GraceWindow() time.Duration }); ok {
		grace = g.GraceWindow()
	}
	return &Engine{cfg: cfg, src: src, dlq: dlq, rater: r, bal: b, archive: a, log: cfg.Logger, m: cfg.Metrics, grace: grace,
		next: map[int]int64{}, firstSeen: map[int]int64{}, seen: map[string]int64{}}, nil
}

// Ready reports nil while batches flow, and the failure being retried while
// a service is down (backpressure: nothing more is consumed meanwhile).
func (e *Engine) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stalled
}

// Run consumes until ctx ends. Two stages overlap: while one batch is being
// archived and committed, the next is fetched, rated and applied to the
// balances (Redis and ClickHouse work at the same time). Batches still commit
// in order, each only after its archive rows are durable. The batches in
// flight when ctx ends are finished (bounded by DrainTimeout) and committed
// before Run returns.
//
// When Redis turns out to have lost acknowledged writes (see Config.Repair),
// the batches in flight are finished, the subscriptions concerned are
// repaired from the archive, and consumption starts again from the
// committed offsets.
func (e *Engine) Run(ctx context.Context) error {
	if ls, ok := e.src.(LagSource); ok && e.m != nil {
		lctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); e.exportLag(lctx, ls) }()
		defer wg.Wait()
		defer stop()
	}
	for {
		err := e.run(ctx)
		var r *errRepair
		if !errors.As(err, &r) || ctx.Err() != nil {
			return err
		}
		if err := e.repair(ctx, r); err != nil {
			return err
		}
	}
}

func (e *Engine) run(ctx context.Context) error {
	e.inflight.Store(0)
	e.progress.Store(time.Now().UnixNano())
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	// Retries during normal running never time out (a long outage is waited
	// out, not skipped); at shutdown the drain has DrainTimeout.
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(e.cfg.DrainTimeout, cancel) })
	defer stop()

	work := make(chan *pending, 1)
	finished := make(chan error, 1)
	go func() {
		var err error
		for p := range work {
			if err == nil {
				err = e.finish(pctx, p)
				if err != nil {
					cancel() // stop the other stage too
				}
			}
			e.inflight.Add(-1)
			e.progress.Store(time.Now().UnixNano())
		}
		finished <- err
	}()
	// A failed finishing stage must stop the fetch too: otherwise a
	// permanent failure or a repair waits for the next message to arrive.
	fctx, fcancel := context.WithCancelCause(ctx)
	defer fcancel(nil)
	defer context.AfterFunc(pctx, func() { fcancel(nil) })()
	// So does Redis found behind while no message arrives (watchRedis).
	var watch sync.WaitGroup
	if e.cfg.Repair != nil {
		watch.Add(1)
		go func() { defer watch.Done(); e.watchRedis(fctx, fcancel) }()
	}
	err := e.produce(fctx, pctx, work)
	fcancel(nil)
	watch.Wait()
	close(work)
	if ferr := <-finished; ferr != nil {
		return ferr
	}
	if err == nil && ctx.Err() == nil {
		if cause := context.Cause(fctx); !errors.Is(cause, context.Canceled) {
			err = cause // watchRedis's finding
		}
	}
	return err
}

// produce is Run's first stage: fetch, rate, apply, hand over.
func (e *Engine) produce(ctx, pctx context.Context, work chan<- *pending) error {
	for {
		e.rejoinBetweenBatches(ctx)
		msgs, err := e.src.Fetch(ctx, e.cfg.BatchSize, e.cfg.Linger)
		if err != nil {
			if ctx.Err() != nil || pctx.Err() != nil {
				return nil
			}
			// A fetch error (broker away, rebalance) is retried like any other.
			e.setStalled("fetch", err)
			e.fetchFailed.Store(true)
			if !sleep(ctx, e.cfg.RetryMin) {
				return nil
			}
			continue
		}
		if e.fetchFailed.Swap(false) {
			e.setStalled("fetch", nil)
		}
		e.progress.Store(time.Now().UnixNano())
		e.inflight.Add(1)
		p, err := e.prepare(pctx, msgs)
		if p == nil {
			e.inflight.Add(-1)
		}
		if err != nil {
			if pctx.Err() != nil {
				return nil // the finishing stage failed, or the drain ran out
			}
			return err
		}
		if p == nil {
			continue
		}
		select {
		case work <- p:
		case <-pctx.Done():
			return nil
		}
	}
}

// exportLag keeps the lag series of the assigned partitions current until
// ctx ends, so they exist from the moment the group assigns them (after a
// restart too) and do not depend on messages flowing. Until the member has
// partitions it asks every second.
func (e *Engine) exportLag(ctx context.Context, ls LagSource) {
	for {
		delay := e.cfg.LagInterval
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		lags, offs, err := e.readLag(lctx, ls)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			e.log.Debug("consumer lag", "err", err)
		default:
			e.m.setAssignedLag(lags)
			if len(lags) == 0 {
				delay = min(delay, time.Second)
			}
			e.unstick(ctx, lags)
			if offs != nil {
				e.watchGroup(ctx, offs)
			}
		}
		if !sleep(ctx, delay) {
			return
		}
	}
}

// unstick rejoins the group when the member's partitions have messages but
// nothing was fetched for StuckAfter, with no batch in flight and no
// service failing: a consumer-group reader that missed a rebalance (seen
// under heavy load) waits forever otherwise. Nothing was fetched, so
// nothing is lost: the rejoined reader starts at the committed offsets.
func (e *Engine) unstick(ctx context.Context, lags map[int]int64) {
	var behind int64
	for _, l := range lags {
		behind += l
	}
	rw, ok := e.src.(Rewinder)
	idle := time.Since(time.Unix(0, e.progress.Load()))
	if !ok || behind == 0 || idle < e.cfg.StuckAfter || e.inflight.Load() != 0 || e.Ready() != nil {
		return
	}
	e.log.Warn("the consumer fetched nothing while its partitions have messages; rejoining the group",
		"behind", behind, "idle", idle.Round(time.Second))
	if e.m != nil {
		e.m.Retries.WithLabelValues("rejoin").Inc()
	}
	e.progress.Store(time.Now().UnixNano())
	if err := rw.Rewind(ctx); err != nil {
		e.log.Warn("rejoining the group", "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (e *Engine) setStalled(stage string, err error) {
	e.mu.Lock()
	if err == nil {
		e.stalled = nil
	} else {
		e.stalled = fmt.Errorf("%s: %w", stage, err)
	}
	e.mu.Unlock()
	if e.m != nil {
		e.m.setBackpressure(err != nil)
		if err != nil {
			e.m.Retries.WithLabelValues(stage).Inc()
		}
	}
}

// retry runs f until it succeeds, backing off between failures, or until
// ctx ends. While it fails the engine reports itself stalled.
func (e *Engine) retry(ctx context.Context, stage string, f func(context.Context) error) error {
	delay := e.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := f(ctx)
		if e.m != nil {
			e.m.StageSeconds.WithLabelValues(stage).Observe(time.Since(start).Seconds())
		}
		if err == nil {
			if attempt > 1 {
				e.log.Info("recovered", "stage", stage, "attempts", attempt)
				e.setStalled(stage, nil)
			}
			return nil
		}
		var rep *errRepair
		if errors.As(err, &rep) {
			return err
		}
		if permanent(err) {
			return fmt.Errorf("%s: %w", stage, err)
		}
		e.setStalled(stage, err)
		if attempt == 1 || attempt%20 == 0 {
			e.log.Warn("retrying", "stage", stage, "attempt", attempt, "err", err)
		}
		if !sleep(ctx, delay) {
			return fmt.Errorf("%s: gave up at shutdown after %d attempts: %w", stage, attempt, err)
		}
		delay = min(delay*2, e.cfg.RetryMax)
	}
}

// permanent errors are bugs or bad rows (fault.Invalid, fault.Permanent):
// retrying cannot help, and the engine stops rather than skip data. The
// rest, unclassified failures too, are retried: they may heal.
func permanent(err error) bool {
	k := fault.Of(err)
	return k == fault.Invalid || k == fault.Permanent
}
