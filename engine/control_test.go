package engine_test

// Pure tests of the engine's control flow with the fault-injecting fakes
// of enginetest: no Redis, Kafka or ClickHouse.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/engine/enginetest"
	"github.com/creditmeter/creditmeter/internal/fault"
)

type world struct {
	log  *enginetest.Log
	dlq  *enginetest.DLQ
	bal  *enginetest.Ledger
	arch *enginetest.Archive
}

func newWorld(n, per int) *world {
	return &world{log: &enginetest.Log{Msgs: enginetest.Usage(0, n, time.Now()), Per: per},
		dlq: &enginetest.DLQ{}, bal: &enginetest.Ledger{}, arch: &enginetest.Archive{}}
}

// run starts an engine over w; stop cancels it and returns Run's error,
// done is closed when Run returns (with *runErr).
func (w *world) run(t *testing.T, cfg engine.Config) (e *engine.Engine, stop func() error, done <-chan struct{}, runErr *error) {
	t.Helper()
	if cfg.RetryMin == 0 {
		cfg.RetryMin = time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e, err := engine.New(cfg, w.log, w.dlq, enginetest.OneCredit{}, w.bal, w.arch)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	runErr = new(error)
	go func() { *runErr = e.Run(ctx); close(finished) }()
	stop = func() error {
		cancel()
		select {
		case <-finished:
			return *runErr
		case <-time.After(20 * time.Second):
			return errors.New("Run did not return after cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return e, stop, finished, runErr
}

func (w *world) waitCommitted(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.log.WaitCommitted(ctx); err != nil {
		t.Fatal(err)
	}
}

// violations collects what hooks see go wrong (hooks run in the engine's
// goroutines).
type violations struct {
	mu  sync.Mutex
	got []string
}

func (v *violations) add(format string, args ...any) {
	v.mu.Lock()
	v.got = append(v.got, fmt.Sprintf(format, args...))
	v.mu.Unlock()
}

func (v *violations) check(t *testing.T) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, g := range v.got {
		t.Error(g)
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// While the archive is down the engine reports it in Ready and commits
// nothing; once it is back, Ready clears and the batch commits.
func TestControlStallIsReportedUntilTheServiceRecovers(t *testing.T) {
	w := newWorld(3, 3)
	gate := make(chan struct{})
	w.arch.Fail = func(int) error {
		select {
		case <-gate:
			return nil
		default:
			return enginetest.ErrDown
		}
	}
	e, _, _, _ := w.run(t, engine.Config{})
	waitFor(t, "a stall", func() bool { return e.Ready() != nil })
	if err := e.Ready(); !strings.HasPrefix(err.Error(), "archive:") || !errors.Is(err, enginetest.ErrDown) {
		t.Errorf("Ready() = %v, want the archive's failure", err)
	}
	waitFor(t, "a few retries", func() bool { return w.arch.Calls() >= 3 })
	if c := w.log.Committed(); c != 0 {
		t.Fatalf("committed up to %d while the archive was down", c)
	}
	close(gate)
	w.waitCommitted(t)
	waitFor(t, "Ready to clear", func() bool { return e.Ready() == nil })
}

// Retries back off: each delay doubles from RetryMin up to RetryMax.
func TestControlRetryBacksOffExponentially(t *testing.T) {
	w := newWorld(1, 1)
	w.arch.Fail = enginetest.FailFirst(5, enginetest.ErrDown)
	w.run(t, engine.Config{RetryMin: 4 * time.Millisecond, RetryMax: 16 * time.Millisecond})
	w.waitCommitted(t)
	if len(w.arch.Times) != 6 {
		t.Fatalf("%d archive attempts, want 6", len(w.arch.Times))
	}
	for i, want := range []time.Duration{4, 8, 16, 16, 16} {
		want *= time.Millisecond
		if gap := w.arch.Times[i+1].Sub(w.arch.Times[i]); gap < want {
			t.Errorf("retry %d after %s, want at least %s", i+1, gap, want)
		}
	}
}

// Every commit comes after the archive rows of its messages are durable and
// after every earlier batch's commit, though the archive fails now and then
// and the balance store loses a reply after applying.
func TestControlCommitsInOrderAfterTheArchive(t *testing.T) {
	w := newWorld(60, 4)
	w.arch.Fail = func(n int) error {
		if n%3 == 0 {
			return enginetest.ErrDown
		}
		return nil
	}
	w.bal.Fail = enginetest.FailFirst(2, enginetest.ErrDown)
	w.bal.FailAfterApply = true
	var v violations
	w.log.OnCommit = func(msgs []kafka.Message) error {
		if err := w.arch.Durable(msgs); err != nil {
			v.add("%v", err)
		}
		if c := w.log.Committed(); msgs[0].Offset != c {
			v.add("commit of offsets from %d while the committed offset is %d", msgs[0].Offset, c)
		}
		return nil
	}
	w.run(t, engine.Config{})
	w.waitCommitted(t)
	v.check(t)
	for o := int64(0); o < 60; o++ {
		r := w.arch.Usage[o]
		if len(r.GrantIDs) != 1 || r.Funded != r.Credits {
			t.Fatalf("offset %d archived as %+v; want its first draws", o, r)
		}
	}
}

// A dead letter the DLQ refuses holds the batch's commit until it is
// accepted; nothing is skipped.
func TestControlRefusedDeadLetterHoldsTheCommit(t *testing.T) {
	w := newWorld(2, 3)
	w.log.Msgs = append(w.log.Msgs, kafka.Message{Topic: "usage-events", Offset: 2, Value: []byte("not json")})
	w.dlq.Fail = enginetest.FailFirst(3, enginetest.ErrDown)
	var v violations
	w.log.OnCommit = func([]kafka.Message) error {
		if n := len(w.dlq.Letters()); n != 1 {
			v.add("committed with %d dead letters accepted, want 1", n)
		}
		return nil
	}
	e, _, _, _ := w.run(t, engine.Config{})
	w.waitCommitted(t)
	v.check(t)
	if e.Ready() != nil {
		t.Errorf("Ready() = %v after the DLQ recovered", e.Ready())
	}
}

// A failed commit is retried alone: the archive and balances are not redone.
func TestControlFailedCommitIsRetried(t *testing.T) {
	w := newWorld(5, 5)
	w.log.FailCommit = enginetest.FailFirst(3, enginetest.ErrDown)
	w.run(t, engine.Config{})
	w.waitCommitted(t)
	if a, b := w.arch.Calls(), w.bal.Calls(); a != 1 || b != 1 {
		t.Errorf("%d archive writes and %d balance applies for one batch, want 1 and 1", a, b)
	}
}

// At shutdown the batch in flight is finished and committed, retrying
// within DrainTimeout; past it Run gives up without committing.
func TestControlShutdownDrainsTheBatchInFlight(t *testing.T) {
	t.Run("drained", func(t *testing.T) {
		w := newWorld(4, 4)
		stopping := make(chan struct{})
		w.arch.Fail = func(n int) error {
			select {
			case <-stopping:
				if n < 8 {
					return enginetest.ErrDown
				}
				return nil
			default:
				return enginetest.ErrDown
			}
		}
		_, stop, _, _ := w.run(t, engine.Config{DrainTimeout: 10 * time.Second})
		waitFor(t, "the archive to fail", func() bool { return w.arch.Calls() >= 2 })
		close(stopping)
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil after a drain", err)
		}
		if c := w.log.Committed(); c != 4 {
			t.Errorf("committed offset %d after the drain, want 4", c)
		}
	})
	t.Run("timed out", func(t *testing.T) {
		w := newWorld(4, 4)
		w.arch.Fail = func(int) error { return enginetest.ErrDown }
		_, stop, _, _ := w.run(t, engine.Config{DrainTimeout: 50 * time.Millisecond})
		waitFor(t, "the archive to fail", func() bool { return w.arch.Calls() >= 2 })
		err := stop()
		if err == nil || !strings.Contains(err.Error(), "gave up at shutdown") || !errors.Is(err, enginetest.ErrDown) {
			t.Errorf("Run = %v, want it to give up on the archive", err)
		}
		if c := w.log.Committed(); c != 0 {
			t.Errorf("committed offset %d, want nothing committed", c)
		}
	})
}

// The journal bound the engine gives the balance store (Batch.Committed)
// never passes an offset that is not committed yet, though later batches
// are applied while earlier ones are archived; and it does advance, so the
// journal is trimmed.
func TestControlJournalBoundStaysAtOrBelowTheCommittedOffset(t *testing.T) {
	w := newWorld(80, 5)
	w.arch.Fail = func(n int) error {
		if n%2 == 0 {
			return enginetest.ErrDown
		}
		return nil
	}
	var v violations
	var highest int64
	w.bal.OnApply = func(b balance.Batch) {
		if c := w.log.Committed(); b.Committed > c {
			v.add("batch from offset %d trims the journal below %d; Kafka's committed offset is %d",
				b.Lines[0].Offset, b.Committed, c)
		}
		highest = max(highest, b.Committed)
	}
	w.run(t, engine.Config{})
	w.waitCommitted(t)
	v.check(t)
	if highest < 40 {
		t.Errorf("highest journal bound %d after 80 messages: the journal is never trimmed", highest)
	}
}

// Permanent failures stop the engine at once, with nothing committed;
// transient ones are retried.
func TestControlPermanentFailureStopsTheEngine(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(w *world)
		want  error
	}{
		{"archive invalid row", func(w *world) {
			w.arch.Fail = func(int) error { return fmt.Errorf("%w: bad column", archive.ErrInvalidRow) }
		}, archive.ErrInvalidRow},
		{"balance invalid batch", func(w *world) {
			w.bal.Fail = func(int) error { return fmt.Errorf("%w: bad batch", balance.ErrInvalid) }
		}, balance.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(3, 3)
			c.setup(w)
			_, _, done, runErr := w.run(t, engine.Config{})
			select {
			case <-done:
				if err := *runErr; !errors.Is(err, c.want) {
					t.Errorf("Run = %v, want %v", err, c.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after a permanent failure")
			}
			if n := w.log.Committed(); n != 0 {
				t.Errorf("committed offset %d after a permanent failure", n)
			}
		})
	}
}

// When Redis turns out to have lost writes (a ledger behind what the
// engine saw, or the repairer's check at start), the engine repairs the
// subscription, rewinds to the committed offsets and goes on: every event
// is archived with its first result.
func TestControlLostWritesAreRepairedAndReplayed(t *testing.T) {
	for _, atStart := range []bool{false, true} {
		t.Run(fmt.Sprint("atStart=", atStart), func(t *testing.T) {
			w := newWorld(20, 5)
			rep := &enginetest.Repairer{Ledger: w.bal}
			if atStart {
				rep.MarkStale("sub-c1")
			} else {
				var once sync.Once
				w.log.OnCommit = func([]kafka.Message) error {
					once.Do(func() { w.bal.Lose("sub-c1", 1) })
					return nil
				}
			}
			w.run(t, engine.Config{Repair: rep})
			w.waitCommitted(t)
			if len(rep.Fixed) == 0 || rep.Fixed[0] != "sub-c1" || w.log.Rewinds() == 0 {
				t.Fatalf("repaired %v with %d rewinds; want sub-c1 repaired and the source rewound", rep.Fixed, w.log.Rewinds())
			}
			for o := int64(0); o < 20; o++ {
				if r := w.arch.Usage[o]; len(r.GrantIDs) != 1 {
					t.Fatalf("offset %d archived as %+v; want its first draws", o, r)
				}
			}
		})
	}
}

// The archive refusing ledger entries that reuse a seq means Redis lost
// writes: the engine repairs at once, though no new message arrives, and
// commits the batch after the replay.
//
// The refusal is loud (issue 14): creditmeter_ledger_conflicts_total counts
// the refused entries, an error is logged naming the subscription, and the
// engine is not ready (backpressure 1) while it repairs.
func TestControlLedgerConflictInTheArchiveRepairs(t *testing.T) {
	w := newWorld(5, 5)
	w.arch.FailLedger = enginetest.FailFirst(1, &archive.LedgerConflictError{
		Keys: []archive.LedgerKey{{SubscriptionID: "sub-c1", Seq: 1}, {SubscriptionID: "sub-c1", Seq: 2}}})
	m := engine.NewMetrics(prometheus.NewRegistry())
	var logs lockedLog
	started := make(chan *engine.Engine, 1) // Repair may run before w.run returns
	var during error
	var backpressure float64
	rep := &repairHook{Repairer: &enginetest.Repairer{Ledger: w.bal}, during: func() {
		e := <-started
		started <- e
		during, backpressure = e.Ready(), testutil.ToFloat64(m.Backpressure)
	}}
	e, _, _, _ := w.run(t, engine.Config{Repair: rep, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	started <- e
	w.waitCommitted(t)
	if len(rep.Fixed) != 1 || rep.Fixed[0] != "sub-c1" || w.log.Rewinds() != 1 {
		t.Errorf("repaired %v with %d rewinds; want sub-c1 once and one rewind", rep.Fixed, w.log.Rewinds())
	}
	if n := testutil.ToFloat64(m.LedgerConflicts); n != 2 {
		t.Errorf("creditmeter_ledger_conflicts_total = %v, want the 2 refused entries", n)
	}
	if during == nil || !strings.Contains(during.Error(), "repair") || backpressure != 1 {
		t.Errorf("while repairing: Ready() = %v, backpressure %v; want not ready (repair) and backpressure 1", during, backpressure)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "reuse archived sequence numbers") || !strings.Contains(out, "sub-c1") {
		t.Errorf("no error log naming the refused entries:\n%s", out)
	}
	if e.Ready() != nil || testutil.ToFloat64(m.Backpressure) != 0 {
		t.Errorf("after the repair: Ready() = %v, backpressure %v", e.Ready(), testutil.ToFloat64(m.Backpressure))
	}
}

// repairHook calls during inside each Repair.
type repairHook struct {
	*enginetest.Repairer
	during func()
}

func (r *repairHook) Repair(ctx context.Context, sub string) (int64, bool, error) {
	r.during()
	return r.Repairer.Repair(ctx, sub)
}

// lockedLog is a log destination written by the engine's goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Each kind of fault.Of, from the archive and from a balance batch: what
// may heal (unavailable, conflict, unclassified) is retried until the batch
// commits; invalid and permanent stop the engine with nothing committed.
func TestControlFaultKinds(t *testing.T) {
	errs := map[fault.Kind]error{
		fault.Unavailable: enginetest.ErrDown,
		fault.Conflict:    fmt.Errorf("%w: moved", balance.ErrConflict),
		fault.Unknown:     errors.New("something unnamed"),
		fault.Invalid:     fmt.Errorf("%w: bad", balance.ErrInvalid),
		fault.Permanent:   fault.Errorf(fault.Permanent, "WRONGTYPE Operation against a key holding the wrong kind of value"),
	}
	for _, stage := range []string{"archive", "balance batch"} {
		for k, ferr := range errs {
			t.Run(stage+"/"+k.String(), func(t *testing.T) {
				w := newWorld(3, 3)
				if stage == "archive" {
					w.arch.Fail = enginetest.FailFirst(2, ferr)
				} else {
					w.bal.FailBatch = enginetest.FailFirst(2, ferr)
				}
				_, _, done, runErr := w.run(t, engine.Config{})
				if fault.Retryable(ferr) || k == fault.Conflict || k == fault.Unknown {
					w.waitCommitted(t)
					return
				}
				select {
				case <-done:
					if !errors.Is(*runErr, ferr) {
						t.Errorf("Run = %v, want %v", *runErr, ferr)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the engine kept retrying")
				}
				if n := w.log.Committed(); n != 0 {
					t.Errorf("committed offset %d", n)
				}
			})
		}
	}
}

// A source that redelivers what is in flight (a rebalance re-read): every
// event still changes the balance once and is archived with its first
// result, and everything commits.
func TestControlRedeliveryOfBatchesInFlight(t *testing.T) {
	w := newWorld(40, 4)
	var once sync.Once
	w.bal.OnApply = func(b balance.Batch) {
		if b.Lines[0].Offset >= 12 {
			once.Do(func() { go w.log.Rewind(context.Background()) })
		}
	}
	w.arch.Fail = func(n int) error {
		if n%2 == 0 {
			return enginetest.ErrDown // keeps batches in flight
		}
		return nil
	}
	w.run(t, engine.Config{})
	w.waitCommitted(t)
	if w.log.Rewinds() != 1 {
		t.Fatalf("%d rewinds, want 1", w.log.Rewinds())
	}
	if b := w.bal.Balance("sub-c1"); b != -credit.Credits(40) {
		t.Errorf("balance %s after 40 events of 1 credit, want -40", b)
	}
	for o := int64(0); o < 40; o++ {
		if r := w.arch.Usage[o]; len(r.GrantIDs) != 1 || r.Funded != r.Credits {
			t.Fatalf("offset %d archived as %+v; want its first draws", o, r)
		}
	}
}

// An idle engine (no message arrives) still notices that Redis lost
// acknowledged writes: at start, and when the Redis servers' identity
// changes (a restart, a failover) while it waits for messages; it repairs
// at once instead of leaving the balances behind until the next event.
func TestControlIdleEngineRepairsLostWrites(t *testing.T) {
	w := newWorld(0, 5) // no message at all
	rep := &enginetest.Repairer{Ledger: w.bal}
	rep.MarkStale("sub-c1") // Redis behind when the engine starts
	var id atomic.Value
	id.Store("run-1")
	w.run(t, engine.Config{Repair: rep, RedisCheckEvery: 20 * time.Millisecond,
		RedisIdentity: func(context.Context) (string, error) { return id.Load().(string), nil }})
	fixed := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			if f := rep.FixedNow(); len(f) > 0 {
				return f
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	if f := fixed(); len(f) != 1 || f[0] != "sub-c1" {
		t.Fatalf("repaired %v at start, want sub-c1", f)
	}

	// Redis restarts behind while the engine waits for messages.
	waitFor(t, "the rewind after the repair at start", func() bool { return w.log.Rewinds() == 1 })
	rewinds := w.log.Rewinds()
	rep.Reset()
	rep.MarkStale("sub-c2")
	id.Store("run-2")
	if f := fixed(); len(f) != 1 || f[0] != "sub-c2" {
		t.Fatalf("repaired %v while idle after the identity changed, want sub-c2", f)
	}
	waitFor(t, "the rewind after the idle repair", func() bool { return w.log.Rewinds() > rewinds })
}
