package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a private Redis Sentinel (redis-server --sentinel) watching
// one master, for tests of failover behind a sentinel URL.
type Sentinel struct {
	*RedisProcess
	Master string // the monitored master's name
}

// StartSentinel starts a sentinel monitoring masterAddr as name, with a
// quorum of 1 and a one-second down-after, and waits until it knows the
// master's replicas. It is killed when the test ends.
func StartSentinel(t testing.TB, name, masterAddr string, replicas int) *Sentinel {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "redis-server binary", "PATH", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	host, mport, err := net.SplitHostPort(masterAddr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf") // a sentinel rewrites its config: it must be its own file
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor %s %s %s 1\n"+
		"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n", port, dir, name, host, mport, name, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &RedisProcess{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, args: []string{conf, "--sentinel"}}
	p.Start()
	t.Cleanup(p.Kill)
	s := &Sentinel{RedisProcess: p, Master: name}
	sc := redis.NewSentinelClient(&redis.Options{Addr: p.Addr})
	defer sc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rs, err := sc.Replicas(context.Background(), name).Result()
		if err == nil && len(rs) >= replicas {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel %s: knows %d replicas of %s, want %d (%v)", p.Addr, len(rs), name, replicas, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL is the --redis-addr of the sentinel's master.
func (s *Sentinel) URL() string {
	return "redis://" + s.Addr + "?mode=sentinel&master_name=" + s.Master
}

// Backend is the sentinel's master as a RedisBackend.
func (s *Sentinel) Backend() RedisBackend {
	return RedisBackend{Name: "sentinel", Addr: s.URL(), Open: func(t testing.TB) redis.UniversalClient { return openRedis(t, "private redis sentinel", s.URL()) }}
}

// MasterAddr is the address the sentinel gives for its master now.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, s.Master).Result()
	if err != nil {
		return "", err
	}
	return strings.Join(a, ":"), nil
}
