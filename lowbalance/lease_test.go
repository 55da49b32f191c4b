package lowbalance_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/lowbalance"
)

// With Active (serve: this node holds the low-balance lease) false, the
// collector neither reads Redis nor exports low-balance series, so N nodes
// cost one reading per scrape interval, not N.
func TestLowBalanceCollectorOnlyWhileActive(t *testing.T) {
	f := &fakeBalances{views: map[string]balance.BalanceView{}, stale: map[string]bool{}}
	f.set("sub-00001", 3, 3, true)
	var active atomic.Bool
	reg := prometheus.NewRegistry()
	reg.MustRegister(lowbalance.NewCollector(f, nil, lowbalance.Options{MaxAge: time.Nanosecond, Active: active.Load}))
	names := []string{"creditmeter_balance_low_credits", "creditmeter_balances_low"}
	if got := series(t, reg, names...); len(got) != 0 {
		t.Fatalf("inactive node exports %v", got)
	}
	f.mu.Lock()
	listed := f.listed
	f.mu.Unlock()
	if listed != 0 {
		t.Fatalf("inactive node read the low set %d times", listed)
	}
	active.Store(true)
	got := series(t, reg, names...)
	if got["creditmeter_balance_low_credits{customer=unknown,plan=unknown,subscription=sub-00001}"] != 3 || len(got) != 2 {
		t.Fatalf("active node exports %v", got)
	}
}

type repairer struct {
	calls atomic.Int32
	subs  atomic.Value
}

func (r *repairer) RepairLow(_ context.Context, subs []string) (int, int, error) {
	r.calls.Add(1)
	r.subs.Store(subs)
	return 1, 0, nil
}

// KeepLowSetRepaired repairs the low set from the listed subscriptions
// every interval until its context ends.
func TestKeepLowSetRepaired(t *testing.T) {
	r := &repairer{}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		lowbalance.KeepLowSetRepaired(ctx, r, func(context.Context) ([]string, error) { return []string{"a", "b"}, nil }, 10*time.Millisecond, nil)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.calls.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("not repaired periodically")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	<-done
	if s, _ := r.subs.Load().([]string); len(s) != 2 {
		t.Fatalf("repaired %v", s)
	}
}
