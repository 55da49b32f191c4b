package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// Redis behind Sentinel (issue 14, item 5): doctor, serve and reconcile
// take the sentinel URL; the master is SIGKILLed mid-stream, the sentinel
// promotes its replica, serve follows it, and balances, the ledger and the
// per-event rows end exact with no seq reused.
func TestSentinelFailoverMidStreamIsExact(t *testing.T) {
	master := testenv.StartRedis(t)
	replica := testenv.StartRedis(t, "--replicaof", "127.0.0.1", strings.TrimPrefix(master.Addr, "127.0.0.1:"))
	mc := master.Client()
	eventually(t, "the replica in sync", func() error {
		if n, err := mc.Do(t.Context(), "WAIT", 1, 100).Int(); n != 1 {
			return fmt.Errorf("%d replicas acknowledged (%v)", n, err)
		}
		return nil
	})
	s := testenv.StartSentinel(t, "cm", master.Addr, 1)
	h := e2e.NewOn(t, 4, s.Backend())
	if out, err := run(t, nil, "doctor", "--only", "redis", "--redis-addr", s.URL()); err != nil || !strings.Contains(out, "sentinel") || !strings.Contains(out, "reachable") {
		t.Fatalf("doctor through the sentinel: %v\n%s", err, out)
	}
	h.Subscribe(30)
	st := h.Generate(51, 20_000, 200, 0)
	h.Produce(st.Msgs)
	p := startServe(t, h, "sentinel")
	waitProgress(t, h, "sentinel", int64(len(st.Msgs)), p)
	lag, _ := h.GroupLag(t.Context(), "sentinel")
	t.Logf("SIGKILL of master %s with %d events not committed", master.Addr, lag)
	master.Kill()
	start := time.Now()
	eventually(t, "the sentinel promotes the replica", func() error {
		a, err := s.MasterAddr(context.Background())
		if err != nil || a != replica.Addr {
			return fmt.Errorf("master %q (%v)", a, err)
		}
		return nil
	})
	t.Logf("replica %s promoted after %s", replica.Addr, time.Since(start).Round(time.Millisecond))
	p.waitDone(h, "sentinel", 6*time.Minute)
	p.stop()
	h.Verify()
	reconcileClean(t, h)
}
