package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/e2e"
)

// serveProc is a creditmeter serve process over a test world.
type serveProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan error
}

// lockedBuffer is the process's output, readable while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitDone waits for the group to commit everything, showing the process's
// log if it does not.
func (p *serveProc) waitDone(h *e2e.Harness, group string, timeout time.Duration) {
	p.t.Helper()
	waitGroupDone(p.t, h, group, timeout, p)
}

// waitGroupDone waits for the group to commit everything; if it does not,
// the test fails with the group's state and the end of every process's log.
func waitGroupDone(t *testing.T, h *e2e.Harness, group string, timeout time.Duration, procs ...*serveProc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lag, err := h.GroupLag(t.Context(), group)
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for i, p := range procs {
				out := p.out.String()
				if len(out) > 8000 {
					out = out[len(out)-8000:]
				}
				fmt.Fprintf(&logs, "--- serve %d's log ends:\n%s\n", i, out)
			}
			t.Fatalf("group %s still %d behind after %s (%v)\n%s%s", group, lag, timeout, err, h.GroupState(t.Context(), group), logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startServe(t *testing.T, h *e2e.Harness, group string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve",
		"--http-addr", "127.0.0.1:"+freePort(t), "--metrics-addr", "127.0.0.1:"+freePort(t),
		"--kafka-brokers", h.Broker.Addr(), "--kafka-group", group,
		"--redis-addr", h.Redis.Addr, "--redis-key-prefix", h.Prefix,
		"--clickhouse-addr", h.CC.Addr, "--clickhouse-database", h.CC.Database,
		"--batch-size", "1000", "--linger", "10ms")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// kill ends the process with SIGKILL: no drain, no commit, no goodbye.
func (p *serveProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process with SIGTERM and requires a clean exit.
func (p *serveProc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("serve exited with %v after SIGTERM:\n%s", err, p.out.String())
		}
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("serve did not stop within 60s of SIGTERM:\n%s", p.out.String())
	}
}

// Test 2 of the engine issue: the engine killed with SIGKILL at random points
// several times mid-stream and restarted; then balances, rated_usage and the
// archived ledger are exactly right and every bad event is in the DLQ once.
func TestKilledAndRestartedIsExact(t *testing.T) {
	h := e2e.New(t, 4)
	h.Subscribe(50)
	st := h.Generate(2, 30_000, 300, 30)
	h.Produce(st.Msgs)

	r := rand.New(rand.NewPCG(2, 2))
	p := startServe(t, h, "crash")
	last := int64(len(st.Msgs))
	for i := 0; i < 4; i++ {
		// Kill while batches are flowing: once this process has committed
		// something, at a random moment after.
		deadline := time.Now().Add(time.Minute)
		for {
			lag, err := h.GroupLag(t.Context(), "crash")
			if err == nil && lag < last {
				last = lag
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no progress after restart #%d:\n%s", i, p.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(r.IntN(400)) * time.Millisecond)
		lag, _ := h.GroupLag(t.Context(), "crash")
		t.Logf("kill -9 #%d with %d events not committed", i+1, lag)
		p.kill()
		p = startServe(t, h, "crash")
	}
	p.waitDone(h, "crash", 6*time.Minute)
	p.stop()
	h.Verify()
	got := h.DeadLetters(30)
	for reason, n := range st.DLQ {
		if got[reason] != n {
			t.Errorf("DLQ %s: %d, want %d", reason, got[reason], n)
		}
	}
}

// Test 3: two engines in one consumer group share the partitions; one is
// killed mid-stream and the other takes over its partitions.
func TestTwoEnginesOneKilledIsExact(t *testing.T) {
	h := e2e.New(t, 4)
	h.Subscribe(50)
	st := h.Generate(3, 40_000, 400, 0)
	h.Produce(st.Msgs[:20_000])
	a := startServe(t, h, "pair")
	b := startServe(t, h, "pair")
	time.Sleep(3 * time.Second)
	h.Produce(st.Msgs[20_000:])
	lag, _ := h.GroupLag(t.Context(), "pair")
	t.Logf("killing one of two engines with %d events not committed", lag)
	a.kill()
	b.waitDone(h, "pair", 6*time.Minute)
	b.stop()
	h.Verify()
}
