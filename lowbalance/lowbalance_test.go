package lowbalance_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/lowbalance"
)

// fakeBalances is an in-memory balance store: sub → balance view.
type fakeBalances struct {
	mu      sync.Mutex
	views   map[string]balance.BalanceView
	stale   map[string]bool // in the low set although no longer low (a crossing in between)
	down    bool
	listed  int
	readErr error
}

func (f *fakeBalances) LowSubscriptions(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed++
	if f.down {
		return nil, balance.ErrUnavailable
	}
	var out []string
	for s, v := range f.views {
		if v.Low || f.stale[s] {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeBalances) Balance(_ context.Context, sub string) (balance.BalanceView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readErr != nil {
		return balance.BalanceView{}, f.readErr
	}
	v, ok := f.views[sub]
	if !ok {
		return v, balance.ErrUnknownSubscription
	}
	return v, nil
}

func (f *fakeBalances) set(sub string, total, avail int64, low bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.views[sub] = balance.BalanceView{Subscription: sub, Total: credit.Credits(total), Available: credit.Credits(avail), Low: low}
}

// series gathers reg and returns name{labels} → value for the names given.
func series(t *testing.T, reg prometheus.Gatherer, names ...string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		want := false
		for _, n := range names {
			want = want || mf.GetName() == n
		}
		if !want {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

func plans(sub string) (string, string, error) {
	n := 0
	fmt.Sscanf(sub, "sub-%d", &n)
	return "cust-" + strings.TrimPrefix(sub, "sub-"), fmt.Sprintf("plan-%d", n%2), nil
}

func TestLowBalanceOnlyLowSubscriptions(t *testing.T) {
	f := &fakeBalances{views: map[string]balance.BalanceView{}, stale: map[string]bool{}}
	for i := range 10_000 {
		f.set(fmt.Sprintf("sub-%05d", i), 500, 500, false)
	}
	f.set("sub-00007", 15, 15, true)
	f.set("sub-00010", 0, 0, true)
	f.set("sub-00011", -3, -3, true)
	f.set("sub-00013", 12, 0, true) // credits not yet effective: none available now
	f.set("sub-00020", 5, 5, false)
	f.stale["sub-00020"] = true // topped up, the set not yet updated: must not be listed
	reg := prometheus.NewRegistry()
	labels := func(_ context.Context, sub string) (string, string, error) { return plans(sub) }
	reg.MustRegister(lowbalance.NewCollector(f, labels, lowbalance.Options{MaxAge: time.Nanosecond}))

	got := series(t, reg, "creditmeter_balance_low_credits", "creditmeter_balance_exhausted", "creditmeter_balances_low",
		"creditmeter_balances_exhausted", "creditmeter_balances_low_unlisted")
	want := map[string]float64{
		"creditmeter_balance_low_credits{customer=cust-00007,plan=plan-1,subscription=sub-00007}": 15,
		"creditmeter_balance_low_credits{customer=cust-00010,plan=plan-0,subscription=sub-00010}": 0,
		"creditmeter_balance_low_credits{customer=cust-00011,plan=plan-1,subscription=sub-00011}": -3,
		"creditmeter_balance_low_credits{customer=cust-00013,plan=plan-1,subscription=sub-00013}": 12,
		"creditmeter_balance_exhausted{customer=cust-00010,plan=plan-0,subscription=sub-00010}":   1,
		"creditmeter_balance_exhausted{customer=cust-00011,plan=plan-1,subscription=sub-00011}":   1,
		"creditmeter_balance_exhausted{customer=cust-00013,plan=plan-1,subscription=sub-00013}":   1,
		"creditmeter_balances_low{plan=plan-0}":                                                   1,
		"creditmeter_balances_low{plan=plan-1}":                                                   3,
		"creditmeter_balances_exhausted{plan=plan-0}":                                             1,
		"creditmeter_balances_exhausted{plan=plan-1}":                                             2,
		"creditmeter_balances_low_unlisted{}":                                                     0,
	}
	diff(t, got, want)

	// Topped up: the series disappear at the next scrape; a new low one appears.
	f.set("sub-00007", 300, 300, false)
	f.set("sub-00011", 250, 250, false)
	f.set("sub-09999", 1, 1, true)
	got = series(t, reg, "creditmeter_balance_low_credits", "creditmeter_balances_low")
	diff(t, got, map[string]float64{
		"creditmeter_balance_low_credits{customer=cust-00010,plan=plan-0,subscription=sub-00010}": 0,
		"creditmeter_balance_low_credits{customer=cust-00013,plan=plan-1,subscription=sub-00013}": 12,
		"creditmeter_balance_low_credits{customer=cust-09999,plan=plan-1,subscription=sub-09999}": 1,
		"creditmeter_balances_low{plan=plan-0}":                                                   1,
		"creditmeter_balances_low{plan=plan-1}":                                                   2,
	})

	// The last low subscription of plan-0 topped up: its plan counts 0, not nothing.
	f.set("sub-00010", 400, 400, false)
	got = series(t, reg, "creditmeter_balance_low_credits", "creditmeter_balances_low", "creditmeter_balances_exhausted")
	diff(t, got, map[string]float64{
		"creditmeter_balance_low_credits{customer=cust-00013,plan=plan-1,subscription=sub-00013}": 12,
		"creditmeter_balance_low_credits{customer=cust-09999,plan=plan-1,subscription=sub-09999}": 1,
		"creditmeter_balances_low{plan=plan-0}":                                                   0,
		"creditmeter_balances_low{plan=plan-1}":                                                   2,
		"creditmeter_balances_exhausted{plan=plan-0}":                                             0,
		"creditmeter_balances_exhausted{plan=plan-1}":                                             1,
	})
}

func diff(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, v)
		}
	}
}

func TestLowBalanceCapAndErrors(t *testing.T) {
	f := &fakeBalances{views: map[string]balance.BalanceView{}, stale: map[string]bool{}}
	for i := range 50 {
		f.set(fmt.Sprintf("sub-%05d", i), 1, 1, true)
	}
	reg := prometheus.NewRegistry()
	c := lowbalance.NewCollector(f, func(_ context.Context, sub string) (string, string, error) { return plans(sub) },
		lowbalance.Options{MaxSeries: 20, MaxAge: time.Hour})
	reg.MustRegister(c)
	if n := testutil.CollectAndCount(c, "creditmeter_balance_low_credits"); n != 20 {
		t.Errorf("%d per-subscription series, want the cap 20", n)
	}
	got := series(t, reg, "creditmeter_balances_low_unlisted", "creditmeter_balances_low")
	diff(t, got, map[string]float64{"creditmeter_balances_low_unlisted{}": 30,
		"creditmeter_balances_low{plan=plan-0}": 10, "creditmeter_balances_low{plan=plan-1}": 10})
	// Within MaxAge scrapes share one reading.
	if f.listed != 1 {
		t.Errorf("%d reads of the low set for 2 scrapes within MaxAge", f.listed)
	}
	before := f.listed
	series(t, reg, "creditmeter_balances_low")
	if f.listed != before {
		t.Errorf("a scrape within MaxAge read the low set again")
	}

	// Redis down: the last reading stays and the failure is counted.
	f2 := &fakeBalances{views: map[string]balance.BalanceView{}, stale: map[string]bool{}}
	f2.set("sub-00001", 3, 3, true)
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(lowbalance.NewCollector(f2, nil, lowbalance.Options{MaxAge: time.Nanosecond}))
	first := series(t, reg2, "creditmeter_balance_low_credits")
	f2.mu.Lock()
	f2.down = true
	f2.mu.Unlock()
	got = series(t, reg2, "creditmeter_balance_low_credits", "creditmeter_low_balance_refresh_errors_total")
	diff(t, got, map[string]float64{
		"creditmeter_balance_low_credits{customer=unknown,plan=unknown,subscription=sub-00001}": 3,
		"creditmeter_low_balance_refresh_errors_total{}":                                        1,
	})
	if len(first) != 1 {
		t.Errorf("first scrape: %v", first)
	}
	f2.mu.Lock()
	f2.down, f2.readErr = false, errors.Join(balance.ErrUnavailable, errors.New("read timeout"))
	f2.mu.Unlock()
	got = series(t, reg2, "creditmeter_low_balance_refresh_errors_total")
	if got["creditmeter_low_balance_refresh_errors_total{}"] != 2 {
		t.Errorf("a failed balance read is a failed refresh: %v", got)
	}
}

// The collector and the account metrics on the real balance store and
// catalog: a subscription under its plan's threshold (20 AIT) is listed with
// its customer and plan, and leaves the list when topped up.
func TestLowBalanceAndTopUpsOnRedis(t *testing.T) {
	h := e2e.New(t, 1)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := engine.NewMetrics(reg)
	am := accounts.NewAccountMetrics(reg, m.LowCrossings)
	h.Accounts.Observer = am
	labels := func(ctx context.Context, sub string) (string, string, error) {
		s, err := h.Catalog.Subscription(ctx, sub)
		if err != nil {
			return "", "", err
		}
		return s.CustomerID, s.PlanID, nil
	}
	reg.MustRegister(lowbalance.NewCollector(h.Balances, labels, lowbalance.Options{MaxAge: time.Nanosecond}))
	var subs []string
	for i, inc := range []string{"10", "1000", "1000", "15"} {
		plan := seed.PlanUnfunded
		if i == 3 {
			plan = seed.PlanOverage
		}
		id, err := seed.Subscribe(ctx, h.Catalog, h.Accounts, seed.Subscription{Customer: fmt.Sprint("lb-", i), Plan: plan, Included: inc})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, id)
	}
	got := series(t, reg, "creditmeter_balance_low_credits", "creditmeter_balances_low")
	diff(t, got, map[string]float64{
		"creditmeter_balance_low_credits{customer=lb-0,plan=ai-prepaid,subscription=" + subs[0] + "}":         10,
		"creditmeter_balance_low_credits{customer=lb-3,plan=ai-prepaid-overage,subscription=" + subs[3] + "}": 15,
		"creditmeter_balances_low{plan=ai-prepaid}":                                                           1,
		"creditmeter_balances_low{plan=ai-prepaid-overage}":                                                   1,
	})

	// Top-ups: applied, replayed, refused (below the plan's minimum of 250).
	if _, err := h.Accounts.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: subs[0], Amount: credit.Credits(300)}, "lb-0"); err != nil {
		t.Fatal(err)
	}
	if res, err := h.Accounts.TopUp(ctx, balance.TopUpRequest{Key: "t1", Subscription: subs[0], Amount: credit.Credits(300)}, "lb-0"); err != nil || !res.Replayed {
		t.Fatalf("replay: %+v %v", res, err)
	}
	if _, err := h.Accounts.TopUp(ctx, balance.TopUpRequest{Key: "t2", Subscription: subs[1], Amount: credit.Credits(5)}, "lb-1"); err == nil {
		t.Fatal("a top-up below the plan minimum was accepted")
	}
	// Adjustments: a deduction that makes lb-1 low, an addition.
	if _, err := h.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "a1", Subscription: subs[1], Amount: -credit.Credits(990), Reason: "test", Actor: "t"}, "lb-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Accounts.Adjust(ctx, balance.AdjustRequest{Key: "a2", Subscription: subs[2], Amount: credit.Credits(7), Reason: "test", Actor: "t"}, "lb-2"); err != nil {
		t.Fatal(err)
	}
	got = series(t, reg, "creditmeter_balance_low_credits", "creditmeter_topups_total", "creditmeter_topup_credits_total",
		"creditmeter_adjustments_total", "creditmeter_adjustment_credits_total", "creditmeter_low_balance_crossings_total")
	want := map[string]float64{
		"creditmeter_balance_low_credits{customer=lb-1,plan=ai-prepaid,subscription=" + subs[1] + "}":         10,
		"creditmeter_balance_low_credits{customer=lb-3,plan=ai-prepaid-overage,subscription=" + subs[3] + "}": 15,
		"creditmeter_topups_total{result=applied}":                                                            1,
		"creditmeter_topups_total{result=replayed}":                                                           1,
		"creditmeter_topups_total{result=refused}":                                                            1,
		"creditmeter_topups_total{result=failed}":                                                             0,
		"creditmeter_topup_credits_total{}":                                                                   300,
		"creditmeter_adjustment_credits_total{direction=add}":                                                 7,
		"creditmeter_adjustment_credits_total{direction=deduct}":                                              990,
		"creditmeter_low_balance_crossings_total{direction=up}":                                               1,
		"creditmeter_low_balance_crossings_total{direction=down}":                                             1,
	}
	for _, d := range []string{"add", "deduct"} {
		for _, r := range []string{"applied", "replayed", "refused", "failed"} {
			want["creditmeter_adjustments_total{direction="+d+",result="+r+"}"] = 0
		}
	}
	want["creditmeter_adjustments_total{direction=add,result=applied}"] = 1
	want["creditmeter_adjustments_total{direction=deduct,result=applied}"] = 1
	diff(t, got, want)
}

// hanging blocks reads of the low set while hang is set, until the refresh times out.
type hanging struct {
	*fakeBalances
	hang chan struct{}
}

func (h *hanging) LowSubscriptions(ctx context.Context) ([]string, error) {
	h.mu.Lock()
	gate := h.hang
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.fakeBalances.LowSubscriptions(ctx)
}

// A Redis that hangs must not hold up the scrape: it gets the last reading
// after Wait, and the new one once the refresh finishes.
func TestLowBalanceSlowRedisDoesNotBlockScrape(t *testing.T) {
	f := &fakeBalances{views: map[string]balance.BalanceView{}, stale: map[string]bool{}}
	f.set("sub-00001", 3, 3, true)
	h := &hanging{fakeBalances: f}
	reg := prometheus.NewRegistry()
	reg.MustRegister(lowbalance.NewCollector(h, nil, lowbalance.Options{MaxAge: time.Nanosecond, Wait: 100 * time.Millisecond, Timeout: time.Minute}))
	if got := series(t, reg, "creditmeter_balance_low_credits"); len(got) != 1 {
		t.Fatalf("first scrape: %v", got)
	}
	gate := make(chan struct{})
	f.mu.Lock()
	h.hang = gate
	f.mu.Unlock()
	f.set("sub-00002", 4, 4, true)
	for range 3 {
		start := time.Now()
		if got := series(t, reg, "creditmeter_balance_low_credits"); len(got) != 1 {
			t.Errorf("while Redis hangs, want the last reading, got %v", got)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("scrape took %s with Redis hanging, want about Wait", d)
		}
	}
	f.mu.Lock()
	h.hang = nil
	f.mu.Unlock()
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := series(t, reg, "creditmeter_balance_low_credits")
		if len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the hang: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
