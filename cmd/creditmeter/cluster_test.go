package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// clusterHarness is a world on the shared Redis Cluster.
func clusterHarness(t *testing.T, partitions int) *e2e.Harness {
	t.Helper()
	return e2e.NewOn(t, partitions, testenv.RedisBackends(t)[1])
}

// Every command reaches Redis Cluster from a list of seed nodes: doctor,
// serve (exact in Redis and the archive), invoice and reconcile.
func TestCommandsOnRedisCluster(t *testing.T) {
	h := clusterHarness(t, 4)
	h.Subscribe(20)
	st := h.Generate(11, 5_000, 50, 0)
	h.Produce(st.Msgs)

	out, err := run(t, nil, "doctor", "--only", "redis", "--redis-addr", h.Redis.Addr)
	if err != nil || !strings.Contains(out, "reachable") || !strings.Contains(out, "cluster") {
		t.Fatalf("doctor on the cluster: %v\n%s", err, out)
	}
	p := startServe(t, h, "cluster-cmds")
	p.waitDone(h, "cluster-cmds", 3*time.Minute)
	p.stop()
	h.Verify()

	sub := h.Subs["cust-000"].Sub
	if out, err := run(t, clusterEnv(h), "invoice", "--subscription", sub, "--period", time.Now().UTC().Format("2006-01"), "--redis-key-prefix", h.Prefix); err != nil || !strings.Contains(out, sub) {
		t.Fatalf("invoice on the cluster: %v\n%s", err, out)
	}
	reconcileClean(t, h)
}

func clusterEnv(h *e2e.Harness) []string {
	return []string{"CREDITMETER_CLICKHOUSE_DATABASE=" + h.CC.Database, "CREDITMETER_CLICKHOUSE_ADDR=" + h.CC.Addr, "CREDITMETER_REDIS_ADDR=" + h.Redis.Addr}
}

// reconcileClean requires reconcile --deep to find every archived ledger
// entry equal to Redis's (no sequence number reused for other content).
func reconcileClean(t *testing.T, h *e2e.Harness) {
	t.Helper()
	if out, err := run(t, clusterEnv(h), "reconcile", "--redis-key-prefix", h.Prefix, "--lag", "0s", "--deep"); err != nil || !strings.Contains(out, "0 with drift") {
		if len(out) > 4000 {
			out = out[:4000]
		}
		t.Errorf("reconcile --deep: %v\n%s", err, out)
	}
}

// Three serve processes in one consumer group on Redis Cluster; one is
// killed with SIGKILL mid-stream and the others take over its partitions.
func TestThreeServesOnClusterOneKilledIsExact(t *testing.T) {
	h := clusterHarness(t, 6)
	h.Subscribe(50)
	st := h.Generate(21, 30_000, 300, 30)
	h.Produce(st.Msgs[:10_000])
	procs := []*serveProc{startServe(t, h, "trio"), startServe(t, h, "trio"), startServe(t, h, "trio")}
	waitProgress(t, h, "trio", int64(10_000), procs[0])
	h.Produce(st.Msgs[10_000:])
	lag, _ := h.GroupLag(t.Context(), "trio")
	t.Logf("killing one of three engines with %d events not committed", lag)
	procs[1].kill()
	waitGroupDone(t, h, "trio", 6*time.Minute, procs...)
	for i, p := range procs { // the watchdogs' work, to learn from
		for _, line := range strings.Split(p.out.String(), "\n") {
			if strings.Contains(line, "rejoin") {
				t.Logf("serve %d: %s", i, line)
			}
		}
	}
	procs[0].stop()
	procs[2].stop()
	h.Verify()
	reconcileClean(t, h)
	got := h.DeadLetters(30)
	for reason, n := range st.DLQ {
		if got[reason] != n {
			t.Errorf("DLQ %s: %d, want %d", reason, got[reason], n)
		}
	}
}

// waitProgress waits until the group has committed something of the first
// total messages, i.e. batches are flowing.
func waitProgress(t *testing.T, h *e2e.Harness, group string, total int64, p *serveProc) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		lag, err := h.GroupLag(t.Context(), group)
		if err == nil && lag < total {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress in a minute (lag %d, %v):\n%s", lag, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A master of a private Redis Cluster is SIGKILLed mid-stream; its replica
// is promoted and serve carries on. Balances, the ledger and the per-event
// archive rows must be exact. Replication is asynchronous: writes the master
// acknowledged but had not yet sent to its replica are lost with it.
// serve notices (the archive holds entries the promoted replica lacks, or
// refuses a reused seq) and repairs those subscriptions from the archive.
func TestClusterMasterKilledMidStreamIsExact(t *testing.T) {
	pc := testenv.StartRedisCluster(t, 3)
	h := e2e.NewOn(t, 4, pc.Backend())
	h.Subscribe(50)
	st := h.Generate(31, 30_000, 300, 0)
	h.Produce(st.Msgs)
	p := startServe(t, h, "failover")
	waitProgress(t, h, "failover", int64(len(st.Msgs)), p)
	time.Sleep(300 * time.Millisecond)

	key := h.Prefix + "{" + h.Subs["cust-000"].Sub + "}"
	victim := pc.MasterOf(key)
	lag, _ := h.GroupLag(t.Context(), "failover")
	t.Logf("SIGKILL of master %s with %d events not committed", victim.Addr, lag)
	pc.Kill(victim)
	start := time.Now()
	promoted := pc.WaitFailover(key, victim, 30*time.Second)
	t.Logf("replica %s promoted; cluster ok again after %s", promoted.Addr, time.Since(start).Round(time.Millisecond))
	p.waitDone(h, "failover", 6*time.Minute)
	p.stop()
	seesFailover(t, h, key)
	h.Verify()
	reconcileClean(t, h)
}

// The replica is paused (SIGSTOP) while 32 MB of filler for the same shard
// fill the socket buffers between it and its master, and serve goes on
// writing for a second; then the master is SIGKILLed and the resumed replica
// promoted: what stayed in the master's output buffer (acknowledged balance
// changes among it) is lost. Balances, the ledger and the per-event rows must
// still end exact, repaired with nobody acting.
func TestClusterFailoverToLaggingReplicaIsExact(t *testing.T) {
	pc := testenv.StartRedisCluster(t, 3)
	h := e2e.NewOn(t, 4, pc.Backend())
	h.Subscribe(50)
	st := h.Generate(41, 30_000, 300, 0)
	h.Produce(st.Msgs)
	p := startServe(t, h, "lagging")
	waitProgress(t, h, "lagging", int64(len(st.Msgs)), p)

	key := h.Prefix + "{" + h.Subs["cust-000"].Sub + "}"
	victim := pc.MasterOf(key)
	replica := pc.ReplicaOf(victim)
	pc.Pause(replica)
	filler := strings.Repeat("x", 1<<20)
	for i := 0; i < 32; i++ {
		if err := h.RC.Set(t.Context(), fmt.Sprintf("%s:filler:%d", key, i), filler, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := h.GroupLag(t.Context(), "lagging")
	time.Sleep(time.Second)
	lag, _ := h.GroupLag(t.Context(), "lagging")
	t.Logf("SIGKILL of master %s: %d events committed while its replica %s was paused, replica %d bytes behind, %d events not committed",
		victim.Addr, before-lag, replica.Addr, pc.ReplLag(victim), lag)
	pc.Kill(victim)
	pc.Resume(replica)
	start := time.Now()
	promoted := pc.WaitFailover(key, victim, 30*time.Second)
	t.Logf("replica %s promoted after %s", promoted.Addr, time.Since(start).Round(time.Millisecond))
	p.waitDone(h, "lagging", 6*time.Minute)
	p.stop()
	seesFailover(t, h, key)
	h.Verify()
	reconcileClean(t, h)
}

// seesFailover waits until the harness's own cluster client, idle since the
// failover, has reloaded the slot map and reaches the promoted master.
func seesFailover(t *testing.T, h *e2e.Harness, key string) {
	t.Helper()
	cc, ok := h.RC.(*redis.ClusterClient)
	if !ok {
		return
	}
	eventually(t, "the test's client reaches the promoted master", func() error {
		cc.ReloadState(t.Context())
		if err := cc.HGet(t.Context(), key+":a", "seq").Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		return nil
	})
}
