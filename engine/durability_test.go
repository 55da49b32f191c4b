package engine_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/reconcile"
)

// archivedLedger is every archived ledger entry (FINAL) by (subscription, seq).
func archivedLedger(t *testing.T, h *e2e.Harness) map[string]string {
	t.Helper()
	rows, err := h.Conn.Query(context.Background(), `SELECT subscription_id, seq, toString(kind), amount, balance_after, created_at
		FROM credit_ledger FINAL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var sub, kind string
		var seq uint64
		var amt, bal decimal.Decimal
		var at time.Time
		if err := rows.Scan(&sub, &seq, &kind, &amt, &bal, &at); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s/%d", sub, seq)] = fmt.Sprintf("%s %s %s %s", kind, amt, bal, at.UTC().Format(time.RFC3339))
	}
	return out
}

// checkNoSeqReuse asserts that no (subscription, seq) was archived twice
// with different content, even before merges.
func checkNoSeqReuse(t *testing.T, h *e2e.Harness) {
	t.Helper()
	var dup uint64
	if err := h.Conn.QueryRow(context.Background(), `SELECT count() FROM (SELECT subscription_id, seq,
		uniqExact(amount, balance_after, created_at) AS n FROM credit_ledger GROUP BY subscription_id, seq HAVING n > 1)`).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Errorf("%d ledger entries were archived twice with different content", dup)
	}
}

// exactAndUnchanged checks the end of a loss test: balances, rated rows and
// ledger sums exact, no seq archived twice, every entry archived before the
// loss (before) unchanged, and reconcile --deep clean.
func exactAndUnchanged(t *testing.T, h *e2e.Harness, before map[string]string) {
	t.Helper()
	h.Verify()
	checkNoSeqReuse(t, h)
	after := archivedLedger(t, h)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("archived ledger entry %s changed: %q, now %q", k, v, after[k])
		}
	}
	rep, err := reconcile.Run(context.Background(), h.Balances, h.Conn, reconcile.Options{Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Drift) != 0 {
		t.Errorf("reconcile after the repair: %d subscriptions drift, first %+v", len(rep.Drift), rep.Drift[0])
	}
}

// Redis loses acknowledged writes mid-stream: it is restarted from a copy
// of its data directory taken seconds earlier (an OS crash under
// appendfsync everysec, or a failover to a replica that far behind), then,
// separately, SIGKILLed and restarted from its own files. With nobody
// acting, the engine notices, repairs the subscriptions from the archive,
// replays from Kafka and ends exact: balances, rated rows and ledger sums,
// and every entry archived before the loss unchanged.
func TestRedisLosesAcknowledgedWrites(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := e2e.NewOn(t, 4, e2e.Private(srv.Addr, srv.Client()))
	h.Subscribe(40)
	st := h.Generate(7, 24_000, 400, 0)
	parts := [][]int{{0, 8_000}, {8_000, 16_000}, {16_000, len(st.Msgs)}}

	e, m, src := h.NewEngine("engine-loss", engine.Config{
		Repair:        &reconcile.Repairer{Store: h.Balances, Conn: h.Conn},
		RedisIdentity: h.Balances.Identity,
		BatchSize:     500,
		RetryMax:      500 * time.Millisecond,
	})
	defer src.Close()
	stop := run(t, e)
	defer func() {
		if stop != nil {
			stop()
		}
	}()

	h.Produce(st.Msgs[parts[0][0]:parts[0][1]])
	e2e.WaitConsumed(t, m, parts[0][1], 2*time.Minute)
	h.WaitGroupDone("engine-loss", time.Minute)
	copied := srv.Copy() // Redis as it will come back

	h.Produce(st.Msgs[parts[1][0]:parts[1][1]])
	e2e.WaitConsumed(t, m, parts[1][1], 2*time.Minute)
	h.WaitGroupDone("engine-loss", time.Minute)
	before := archivedLedger(t, h)
	srv.RestartFrom(copied) // the writes of the second part are gone from Redis

	h.Produce(st.Msgs[parts[2][0]:parts[2][1]])
	h.WaitGroupDone("engine-loss", 2*time.Minute)
	if n := testutil.ToFloat64(m.Repairs); n == 0 {
		t.Errorf("no subscription repaired after Redis lost writes")
	}

	srv.Kill() // and a plain crash, restarted from its own files
	srv.Start()
	more := h.Generate(8, 2_000, 20, 0)
	h.Produce(more.Msgs)
	h.WaitGroupDone("engine-loss", 2*time.Minute)
	stop()
	stop = nil

	exactAndUnchanged(t, h, before)
	t.Logf("repaired %v subscriptions; %v ledger entries refused", testutil.ToFloat64(m.Repairs), testutil.ToFloat64(m.LedgerConflicts))
}

// startPair starts a private Redis master and a replica of it, and waits
// until the replica is in sync.
func startPair(t *testing.T) (master, replica *testenv.RedisProcess) {
	t.Helper()
	master = testenv.StartRedis(t)
	replica = testenv.StartRedis(t, "--replicaof", "127.0.0.1", strings.TrimPrefix(master.Addr, "127.0.0.1:"))
	rc := master.Client()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if n, _ := rc.Do(context.Background(), "WAIT", 1, 100).Int(); n == 1 {
			return master, replica
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica never caught up")
		}
	}
}

// With --redis-min-replicas 1, a batch's offsets are committed only once
// the replica holds its balance changes: with the replica paused the engine
// stops committing (backpressure, not ready) and goes on when it is back.
func TestCommitsWaitForReplicas(t *testing.T) {
	master, replica := startPair(t)
	h := e2e.NewOn(t, 2, e2e.Private(master.Addr, master.Client()))
	h.Subscribe(10)
	st := h.Generate(11, 4_000, 40, 0)
	e, m, src := h.NewEngine("engine-wait", engine.Config{
		BatchSize: 500, RetryMax: 200 * time.Millisecond,
		WaitReplicas: func(ctx context.Context) error { return h.Balances.WaitReplicas(ctx, 1, 200*time.Millisecond) },
	})
	defer src.Close()
	stop := run(t, e)
	defer stop()

	h.Produce(st.Msgs[:2_000])
	h.WaitGroupDone("engine-wait", time.Minute)
	replica.Pause()
	h.Produce(st.Msgs[2_000:])
	deadline := time.Now().Add(20 * time.Second)
	for e.Ready() == nil || !strings.Contains(e.Ready().Error(), "replicas") {
		if time.Now().After(deadline) {
			t.Fatalf("no backpressure while the replica is paused: ready=%v", e.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	lag, err := h.GroupLag(context.Background(), "engine-wait")
	if err != nil || lag == 0 {
		t.Fatalf("committed with the replica paused: lag %d, %v", lag, err)
	}
	if testutil.ToFloat64(m.Backpressure) != 1 {
		t.Error("creditmeter_backpressure is not 1 while commits wait for the replica")
	}
	replica.Resume()
	h.WaitGroupDone("engine-wait", time.Minute)
	h.Verify()
}

// A failover to a replica that was behind: the replica stops replicating
// mid-stream, the engine goes on (no WAIT) and commits, then the master
// dies and the replica takes over behind the same address. The
// promoted replica lacks acknowledged writes; the engine repairs them from
// the archive and ends exact, the archive unchanged.
func TestFailoverToLaggingReplica(t *testing.T) {
	master, replica := startPair(t)
	p := newProxy(t, master.Addr)
	rc := redis.NewClient(&redis.Options{Addr: p.addr()})
	t.Cleanup(func() { rc.Close() })
	h := e2e.NewOn(t, 2, e2e.Private(p.addr(), rc))
	h.Subscribe(20)
	st := h.Generate(12, 12_000, 120, 0)
	e, m, src := h.NewEngine("engine-failover", engine.Config{
		Repair:        &reconcile.Repairer{Store: h.Balances, Conn: h.Conn},
		RedisIdentity: h.Balances.Identity,
		BatchSize:     500, RetryMax: 300 * time.Millisecond,
	})
	defer src.Close()
	stop := run(t, e)
	defer func() {
		if stop != nil {
			stop()
		}
	}()

	h.Produce(st.Msgs[:4_000])
	h.WaitGroupDone("engine-failover", time.Minute)
	// Its replication stops here, for sure: a paused replica could still
	// read everything from its socket buffers when resumed.
	rr := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rr.Close()
	if err := rr.Do(context.Background(), "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	h.Produce(st.Msgs[4_000:8_000])
	h.WaitGroupDone("engine-failover", time.Minute)
	before := archivedLedger(t, h)

	master.Kill() // and the replica, behind, takes over behind the same address
	p.cut()
	p.retarget(replica.Addr)
	p.restore()

	h.Produce(st.Msgs[8_000:])
	h.WaitGroupDone("engine-failover", 2*time.Minute)
	stop()
	stop = nil
	if n := testutil.ToFloat64(m.Repairs); n == 0 {
		t.Errorf("no subscription repaired after the failover lost writes")
	}
	exactAndUnchanged(t, h, before)
}

// The scenario: all events are in Kafka, the engine drains them;
// a third of the way in, Redis's data directory is copied; two thirds of
// the way, Redis is SIGKILLed and restarted from that copy. Set
// CREDITMETER_DURABILITY_EVENTS for a larger run (default 30,000).
func TestRedisRestartedFromCopyMidDrain(t *testing.T) {
	n := 30_000
	if v := os.Getenv("CREDITMETER_DURABILITY_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	srv := testenv.StartRedis(t)
	h := e2e.NewOn(t, 4, e2e.Private(srv.Addr, srv.Client()))
	h.Subscribe(100)
	st := h.Generate(21, n, n/100, 0)
	h.Produce(st.Msgs)
	e, m, src := h.NewEngine("engine-middrain", engine.Config{
		Repair:        &reconcile.Repairer{Store: h.Balances, Conn: h.Conn},
		RedisIdentity: h.Balances.Identity,
		BatchSize:     1000,
		RetryMax:      500 * time.Millisecond,
	})
	defer src.Close()
	start := time.Now()
	stop := run(t, e)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	e2e.WaitConsumed(t, m, len(st.Msgs)/3, 5*time.Minute)
	copied := srv.Copy()
	e2e.WaitConsumed(t, m, 2*len(st.Msgs)/3, 5*time.Minute)
	before := archivedLedger(t, h)
	srv.RestartFrom(copied)
	h.WaitGroupDone("engine-middrain", 10*time.Minute)
	took := time.Since(start)
	stop()
	stop = nil
	exactAndUnchanged(t, h, before)
	t.Logf("%d messages in %s; %v subscriptions repaired, %v ledger entries refused, %d archived entries before the loss unchanged",
		len(st.Msgs), took.Round(time.Millisecond), testutil.ToFloat64(m.Repairs), testutil.ToFloat64(m.LedgerConflicts), len(before))
}
