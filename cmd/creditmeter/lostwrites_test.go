package main

import (
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// The issue-14 set-up a new user tried: serve killed now and then while
// Redis (standalone, appendfsync everysec) twice loses seconds of
// acknowledged writes: once while serve is down, once under a running serve
// with nothing left to consume (no event comes to reveal it). With nobody
// acting, balances, the ledger and the per-event rows end exact,
// duplicates of the lost windows are still caught, no archived entry is
// rewritten, and reconcile --deep is clean.
func TestServeKilledWhileRedisLosesWritesTwiceIsExact(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := e2e.NewOn(t, 4, e2e.Private(srv.Addr, srv.Client()))
	h.Subscribe(40)
	st := h.Generate(61, 20_000, 200, 0)
	part := func(i int) int { return i * len(st.Msgs) / 5 }
	const group = "losses"

	h.Produce(st.Msgs[:part(1)])
	p := startServe(t, h, group)
	p.waitDone(h, group, 3*time.Minute)
	first := srv.Copy()
	h.Produce(st.Msgs[part(1):part(2)])
	p.waitDone(h, group, 3*time.Minute) // committed and archived, then lost:
	p.kill()
	srv.RestartFrom(first)

	h.Produce(st.Msgs[part(2):part(3)])
	p = startServe(t, h, group)
	p.waitDone(h, group, 3*time.Minute)
	repaired(t, p, 1)
	second := srv.Copy()
	h.Produce(st.Msgs[part(3):part(4)])
	p.waitDone(h, group, 3*time.Minute)
	srv.RestartFrom(second) // under the running serve, idle
	repaired(t, p, 2)

	h.Produce(st.Msgs[part(4):])
	waitProgress(t, h, group, int64(len(st.Msgs)-part(4)), p)
	lag, _ := h.GroupLag(t.Context(), group)
	t.Logf("SIGKILL of serve with %d events not committed", lag)
	p.kill()
	p = startServe(t, h, group)
	p.waitDone(h, group, 4*time.Minute)
	p.stop()
	h.Verify()
	reconcileClean(t, h)
}

// repaired waits until p's log tells of n repairs of lost writes.
func repaired(t *testing.T, p *serveProc, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := p.out.String()
		if strings.Count(out, "repaired from the archive") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not repair lost writes (%d times) within 2 minutes:\n%s", n, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
