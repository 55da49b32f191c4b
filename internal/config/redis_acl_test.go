package config_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// A private redis-server with an ACL user and no default user: the URL's
// user, password and database reach it, and a wrong password is refused.
func TestRedisURLWithACLUserOnRealRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Unavailable(t, "redis-server binary", "PATH", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir(),
		"--user", "default", "off", "--user", "billing", "on", ">s3cret", "~*", "+@all")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	ctx := context.Background()
	rc, conn, err := config.NewRedisClient(config.Redis{Addr: "redis://billing:s3cret@127.0.0.1:" + port + "/3"}, config.RedisTuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rc.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", conn, rc.Ping(ctx).Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if who, err := rc.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "billing" {
		t.Fatalf("ACL WHOAMI = %q, %v", who, err)
	}
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.Do(ctx, "INFO", "keyspace").Text(); err != nil || !strings.Contains(n, "db3:keys=1") {
		t.Fatalf("want the key in db 3: %q, %v", n, err)
	}

	bad, _, err := config.NewRedisClient(config.Redis{Addr: "127.0.0.1:" + port, Username: "billing", Password: "wrong"}, config.RedisTuning{MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Fatal("a wrong password must be refused")
	}
}

// Sentinel mode asks a private sentinel for the master and writes to it.
func TestRedisSentinelModeOnRealRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Unavailable(t, "redis-server binary", "PATH", err)
	}
	master, sentinel := freePort(t), freePort(t)
	dir := t.TempDir()
	startProc(t, bin, "--bind", "127.0.0.1", "--port", master, "--save", "", "--appendonly", "no", "--dir", dir)
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte("bind 127.0.0.1\nport "+sentinel+"\ndir "+dir+"\nsentinel monitor mymaster 127.0.0.1 "+master+" 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, bin, conf, "--sentinel")

	ctx := context.Background()
	rc, conn, err := config.NewRedisClient(config.Redis{Addr: "127.0.0.1:" + sentinel, Mode: "sentinel", MasterName: "mymaster"}, config.RedisTuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rc.Set(ctx, "k", "v", 0).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", conn, rc.Set(ctx, "k", "v", 0).Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
	direct := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + master})
	defer direct.Close()
	if v, err := direct.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("the master on :%s has k = %q (%v), want the sentinel client's write", master, v, err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func startProc(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}
