package balance

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedis starts a throw-away redis-server, so a test may flush its
// script cache without disturbing other tests on the shared one.
func privateRedis(t *testing.T) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	t.Cleanup(func() { rc.Close() })
	for i := 0; ; i++ {
		if rc.Ping(context.Background()).Err() == nil {
			return rc
		}
		if i == 50 {
			t.Fatal("private redis-server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// After a Redis restart or failover the script cache is empty: pipelined
// EVALSHA calls fail with NOSCRIPT without running, and Apply loads the
// script and runs them again, once.
func TestApplyReloadsScripts(t *testing.T) {
	rc := privateRedis(t)
	ctx := context.Background()
	s, err := New(rc, Options{Prefix: "x:"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"a", "b"} {
		if _, err := s.OpenAccount(ctx, AccountSpec{Subscription: sub, Customer: "c", Policy: Overage, Currency: "USD"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := rc.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rs, err := s.Apply(ctx, []Batch{batch("a", 0, line("e"+strconv.Itoa(i), int64(i), t0, c(1))), batch("b", 0, line("e"+strconv.Itoa(i), int64(i), t0, c(1)))})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Balance != -c(int64(i+1)) || r.Lines[0].Status != Applied {
				t.Fatalf("round %d: %+v", i, r)
			}
		}
	}
}
