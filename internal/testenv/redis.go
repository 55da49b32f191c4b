package testenv

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/config"
)

// DefaultClusterAddrs is the cluster deploy/local/start.sh runs.
const DefaultClusterAddrs = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005,127.0.0.1:7006"

// ClusterAddrs are the seed nodes of the shared test cluster
// (CREDITMETER_REDIS_CLUSTER_ADDRS, comma-separated).
func ClusterAddrs() string {
	if v := os.Getenv("CREDITMETER_REDIS_CLUSTER_ADDRS"); v != "" {
		return v
	}
	return DefaultClusterAddrs
}

// openRedis builds a client with creditmeter's own builder and checks that it
// answers (and, on a cluster, that every slot is served).
func openRedis(t testing.TB, service, addr string) redis.UniversalClient {
	t.Helper()
	rc, _, err := config.NewRedisClient(config.Redis{Addr: addr}, config.RedisTuning{})
	if err != nil {
		t.Fatalf("%s: %v", service, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = rc.Ping(ctx).Err()
	if cc, ok := rc.(*redis.ClusterClient); ok && err == nil {
		err = cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			info, err := n.ClusterInfo(ctx).Result()
			if err == nil && !strings.Contains(info, "cluster_state:ok") {
				err = fmt.Errorf("node %s: cluster_state is not ok", n.Options().Addr)
			}
			return err
		})
	}
	if err != nil {
		rc.Close()
		Unavailable(t, service, addr, err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// RedisCluster returns a client of the shared Redis Cluster (deploy/local
// starts it); keys a test writes must start with its Prefix.
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	return openRedis(t, "redis cluster", ClusterAddrs()).(*redis.ClusterClient)
}

// ClusterKeyspace is the shared cluster and a random key prefix for one test;
// every key under the prefix is deleted when the test ends.
func ClusterKeyspace(t testing.TB) (*redis.ClusterClient, string) {
	t.Helper()
	rc := RedisCluster(t)
	return rc, KeyspaceOn(t, rc)
}

// KeyspaceOn is a random key prefix for one test on rc, standalone or
// cluster; its keys are deleted when the test ends (SCAN on each master).
func KeyspaceOn(t testing.TB, rc redis.UniversalClient) string {
	t.Helper()
	prefix := Prefix(t)
	t.Cleanup(func() { DeletePrefix(context.Background(), rc, prefix) })
	return prefix
}

// DeletePrefix deletes every key under prefix, on each master of a cluster.
func DeletePrefix(ctx context.Context, rc redis.UniversalClient, prefix string) {
	del := func(ctx context.Context, n redis.Cmdable) error {
		iter := n.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		flush := func() {
			// One key per call: a cluster refuses multi-key commands across slots.
			for _, k := range keys {
				n.Unlink(ctx, k)
			}
			keys = keys[:0]
		}
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 500 {
				flush()
			}
		}
		flush()
		return iter.Err()
	}
	if cc, ok := rc.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
		return
	}
	_ = del(ctx, rc)
}

// Keys lists the keys matching pattern with SCAN, on each master of a
// cluster: tests share one Redis, which KEYS would block.
func Keys(ctx context.Context, rc redis.UniversalClient, pattern string) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, n redis.Cmdable) error {
		iter := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	if cc, ok := rc.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
		return keys, err
	}
	return keys, scan(ctx, rc)
}

// RedisBackend is one Redis deployment a contract suite runs on.
type RedisBackend struct {
	Name string
	Addr string // the --redis-addr of creditmeter commands
	// Open returns a client, failing or skipping t if the backend is missing.
	Open func(t testing.TB) redis.UniversalClient
}

// RedisBackends are the standalone Redis and the shared cluster.
func RedisBackends(t testing.TB) []RedisBackend {
	return []RedisBackend{
		{Name: "standalone", Addr: Config(t).Redis.Addr, Open: func(t testing.TB) redis.UniversalClient { return Redis(t) }},
		{Name: "cluster", Addr: ClusterAddrs(), Open: func(t testing.TB) redis.UniversalClient { return RedisCluster(t) }},
	}
}

// PrivateCluster is a Redis Cluster of this test's own redis-server
// processes, for tests that kill nodes; it is killed when the test ends.
type PrivateCluster struct {
	t     testing.TB
	Nodes []*ClusterNode
}

// ClusterNode is one redis-server process of a PrivateCluster.
type ClusterNode struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	dead bool
}

// Addrs is the --redis-addr of the cluster.
func (c *PrivateCluster) Addrs() string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return strings.Join(a, ",")
}

// Backend is the cluster as a RedisBackend.
func (c *PrivateCluster) Backend() RedisBackend {
	return RedisBackend{Name: "private-cluster", Addr: c.Addrs(), Open: func(t testing.TB) redis.UniversalClient { return openRedis(t, "private redis cluster", c.Addrs()) }}
}

// freeClusterPort finds a port whose cluster bus port (port+10000) is free too.
func freeClusterPort(t testing.TB, taken map[int]bool) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		p := 20000 + rand.IntN(30000)
		if taken[p] || taken[p+10000] {
			continue
		}
		ok := true
		for _, q := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			taken[p], taken[p+10000] = true, true
			return p
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// StartRedisCluster starts masters masters with one replica each from
// Debian's redis-server (AOF on, 1 s node timeout) and waits for
// cluster_state:ok. Missing redis-server fails or skips like a missing service.
func StartRedisCluster(t testing.TB, masters int) *PrivateCluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server binary", "PATH", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		Unavailable(t, "redis-cli binary", "PATH", err)
	}
	c := &PrivateCluster{t: t}
	t.Cleanup(c.killAll)
	taken := map[int]bool{}
	for i := 0; i < 2*masters; i++ {
		port := freeClusterPort(t, taken)
		n := &ClusterNode{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: filepath.Join(t.TempDir(), strconv.Itoa(port))}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, n)
		c.start(bin, n)
	}
	for _, n := range c.Nodes {
		c.waitPing(n, 10*time.Second)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK(30 * time.Second)
	c.waitReplicasSynced(30 * time.Second)
	return c
}

// waitReplicasSynced waits until every replica has finished its first sync:
// a replica that never synced refuses to take over from a dead master.
func (c *PrivateCluster) waitReplicasSynced(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		replicas, synced := 0, 0
		for _, n := range c.Nodes {
			rc := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
			info, err := rc.Info(context.Background(), "replication").Result()
			rc.Close()
			if err == nil && strings.Contains(info, "role:slave") {
				replicas++
				if strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
					synced++
				}
			}
		}
		if replicas == len(c.Nodes)/2 && synced == replicas {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("private cluster: %d of %d replicas synced after %s", synced, replicas, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *PrivateCluster) start(bin string, n *ClusterNode) {
	c.t.Helper()
	_, port, _ := net.SplitHostPort(n.Addr)
	n.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", n.Dir,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--logfile", filepath.Join(n.Dir, "redis.log"))
	if err := n.cmd.Start(); err != nil {
		c.t.Fatalf("start redis-server on %s: %v", n.Addr, err)
	}
	n.done = make(chan struct{})
	n.dead = false
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(n.cmd, n.done)
}

func (c *PrivateCluster) waitPing(n *ClusterNode, timeout time.Duration) {
	c.t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
	defer rc.Close()
	deadline := time.Now().Add(timeout)
	for rc.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			c.t.Fatalf("redis-server %s did not answer in %s; log:\n%s", n.Addr, timeout, n.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogTail is the end of the node's log.
func (n *ClusterNode) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "redis.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Alive reports whether the node's process runs.
func (n *ClusterNode) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.dead
}

// Kill ends the node with SIGKILL: no AOF flush, no goodbye.
func (c *PrivateCluster) Kill(n *ClusterNode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.dead = true
}

func (c *PrivateCluster) killAll() {
	for _, n := range c.Nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			c.Kill(n)
		}
	}
}

// Role is what a live node says it is: "master" or "slave" (Redis's word).
func (c *PrivateCluster) Role(n *ClusterNode) string {
	rc := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
	defer rc.Close()
	info, err := rc.Info(context.Background(), "replication").Result()
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "role:"); ok {
			return v
		}
	}
	return ""
}

// MasterOf is the live node that serves key's slot as master.
func (c *PrivateCluster) MasterOf(key string) *ClusterNode {
	c.t.Helper()
	if n := c.masterOf(key); n != nil {
		return n
	}
	c.t.Fatalf("no live master serves %q", key)
	return nil
}

// WaitFailover waits until a live replica has taken over key's slot from
// old and every live node reports cluster_state:ok; it returns the new master.
func (c *PrivateCluster) WaitFailover(key string, old *ClusterNode, timeout time.Duration) *ClusterNode {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if n := c.masterOf(key); n != nil && n != old && c.allOK() {
			return n
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, n := range c.Nodes {
				fmt.Fprintf(&logs, "--- %s\n%s\n", n.Addr, n.LogTail())
			}
			c.t.Fatalf("no replica took over %q from %s in %s; logs:\n%s", key, old.Addr, timeout, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *PrivateCluster) masterOf(key string) *ClusterNode {
	for _, n := range c.Nodes {
		if !n.Alive() || c.Role(n) != "master" {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		s, err := rc.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			rc.Close()
			continue
		}
		owner := false
		//lint:ignore SA1019 CLUSTER SLOTS gives slot ranges with their master, all this needs, on every Redis 7 (CLUSTER SHARDS would change the code path, not the answer)
		slots, err := rc.ClusterSlots(context.Background()).Result()
		rc.Close()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if int64(r.Start) <= s && s <= int64(r.End) && len(r.Nodes) > 0 && r.Nodes[0].Addr == n.Addr {
				owner = true
			}
		}
		if owner {
			return n
		}
	}
	return nil
}

// WaitOK waits until every live node reports cluster_state:ok and every
// slot has a live master.
func (c *PrivateCluster) WaitOK(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if c.allOK() {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("private cluster not ok after %s; first node's log:\n%s", timeout, c.Nodes[0].LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allOK reports whether every live node says cluster_state:ok.
func (c *PrivateCluster) allOK() bool {
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		info, err := rc.ClusterInfo(context.Background()).Result()
		rc.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
	}
	return true
}

// ReplicaOf is the live replica of master.
func (c *PrivateCluster) ReplicaOf(master *ClusterNode) *ClusterNode {
	c.t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: -1})
	defer rc.Close()
	info, err := rc.Info(context.Background(), "replication").Result()
	if err != nil {
		c.t.Fatalf("replicas of %s: %v", master.Addr, err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if !strings.HasPrefix(l, "slave0:") {
			continue
		}
		var ip, port string
		for _, kv := range strings.Split(strings.TrimPrefix(l, "slave0:"), ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		for _, n := range c.Nodes {
			if n.Addr == ip+":"+port {
				return n
			}
		}
	}
	c.t.Fatalf("%s has no replica", master.Addr)
	return nil
}

// Pause stops the node's process (SIGSTOP); Resume continues it (SIGCONT).
// A paused replica falls behind its master once the socket buffers between
// them are full.
func (c *PrivateCluster) Pause(n *ClusterNode) { _ = n.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused node.
func (c *PrivateCluster) Resume(n *ClusterNode) { _ = n.cmd.Process.Signal(syscall.SIGCONT) }

// ReplLag is how many bytes of the replication stream master has that its
// replica has not acknowledged, by the master's INFO (the replica may be paused).
func (c *PrivateCluster) ReplLag(master *ClusterNode) int64 {
	rc := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: -1})
	defer rc.Close()
	info, _ := rc.Info(context.Background(), "replication").Result()
	var own, acked int64 = -1, -1
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "master_repl_offset:"); ok {
			own, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "slave0:"); ok {
			for _, kv := range strings.Split(v, ",") {
				if o, ok := strings.CutPrefix(kv, "offset="); ok {
					acked, _ = strconv.ParseInt(o, 10, 64)
				}
			}
		}
	}
	return own - acked
}
