package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisProcess is a private redis-server of one test (Debian's binary, on
// its own port and directory), for tests that kill, restart or roll back
// Redis. It is stopped when the test ends.
type RedisProcess struct {
	t    testing.TB
	Addr string
	Dir  string
	args []string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server with AOF (appendfsync everysec
// unless extra says otherwise) and extra arguments, e.g. "--replicaof".
func StartRedis(t testing.TB, extra ...string) *RedisProcess {
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
	p := &RedisProcess{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: t.TempDir()}
	p.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", p.Dir, "--appendonly", "yes",
		"--appendfsync", "everysec", "--save", "", "--daemonize", "no", "--protected-mode", "no"}, extra...)
	p.Start()
	t.Cleanup(p.Kill)
	return p
}

// Start runs the server (again) on its port and directory and waits until
// it answers.
func (p *RedisProcess) Start() {
	p.t.Helper()
	p.cmd = exec.Command("redis-server", p.args...)
	p.cmd.Stdout, p.cmd.Stderr = nil, nil
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: p.Addr})
	defer rc.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := rc.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("private redis-server on %s did not answer: %v", p.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL (as an OS crash would end it) and waits for the exit.
func (p *RedisProcess) Kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies too
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
		p.cmd = nil
	}
}

// Copy copies the data directory now (as a replica that far behind, or a
// disk that lost the last seconds, would hold it) into a new directory.
func (p *RedisProcess) Copy() string {
	p.t.Helper()
	dst := p.t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(p.Dir)); err != nil {
		p.t.Fatal(err)
	}
	return dst
}

// RestartFrom kills the server and starts it again on the data of dir (a
// Copy), losing every write made after that copy.
func (p *RedisProcess) RestartFrom(dir string) {
	p.t.Helper()
	p.Kill()
	if err := os.RemoveAll(p.Dir); err != nil {
		p.t.Fatal(err)
	}
	if err := os.CopyFS(p.Dir, os.DirFS(dir)); err != nil {
		p.t.Fatal(err)
	}
	p.Start()
}

// Client is a client of the server, closed when the test ends.
func (p *RedisProcess) Client() *redis.Client {
	rc := redis.NewClient(&redis.Options{Addr: p.Addr})
	p.t.Cleanup(func() { rc.Close() })
	return rc
}

// Pause stops the server's process (SIGSTOP) until Resume: it neither
// answers nor replicates meanwhile.
func (p *RedisProcess) Pause() { p.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (p *RedisProcess) Resume() { p.signal(syscall.SIGCONT) }

func (p *RedisProcess) signal(s syscall.Signal) {
	p.t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		p.t.Fatal("redis-server is not running")
	}
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}
