package lowbalance

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// Source is what the low-balance collector reads (balance.Store).
type Source interface {
	LowSubscriptions(ctx context.Context) ([]string, error)
	Balance(ctx context.Context, sub string) (balance.BalanceView, error)
}

// SubscriptionLabels gives a subscription's customer and plan (from the
// catalog).
type SubscriptionLabels func(ctx context.Context, sub string) (customer, plan string, err error)

// Options bound the collector's cost; zero values take defaults.
type Options struct {
	// MaxSeries caps the per-subscription series (default 1000). Low
	// subscriptions beyond it, in id order, are only counted in
	// creditmeter_balances_low_unlisted.
	MaxSeries int
	// MaxAge is how long a refresh serves scrapes (default 1s), so several
	// Prometheus servers scraping at once cost one refresh.
	MaxAge time.Duration
	// Timeout bounds a refresh (default 5s).
	Timeout time.Duration
	// Wait is the longest a scrape waits for a refresh (default 1s) before
	// it serves the last reading; the refresh goes on in the background.
	Wait time.Duration
	// Workers read balances in parallel (default 8).
	Workers int
	// Active, when set, gates the collector: while it returns false it
	// reads nothing and exports only its error counter. serve passes its
	// low-balance lease's MayHold, so one node reads the low balances.
	Active func() bool
}

// Collector exposes, at scrape time, the subscriptions below their
// low-balance threshold. Only those get series, so label cardinality is
// bounded by the number of low subscriptions (and MaxSeries), not by all
// subscriptions; a topped-up subscription leaves the low set and its series
// disappear at the next scrape.
//
// It relies on the balance store's low set, which holds only subscriptions
// with a threshold: one without a threshold is never listed, even at zero.
type Collector struct {
	src    Source
	labels SubscriptionLabels
	opt    Options

	mu        sync.Mutex
	running   chan struct{} // closed when the refresh in progress ends; nil when none
	at        time.Time     // end of the last refresh
	snap      []lowSub
	unlisted  int
	errs      float64
	labelMemo map[string][2]string // customer, plan of subscriptions low at the last refresh; replaced, never modified
	plans     map[string]bool      // plans ever seen low

	descLow, descExhausted, descLowByPlan, descExhaustedByPlan, descUnlisted, descErrs *prometheus.Desc
}

type lowSub struct {
	sub, customer, plan string
	total               credit.Amount
	exhausted           bool
	labeled             bool
}

// NewCollector builds the collector; register it on a registry.
func NewCollector(src Source, labels SubscriptionLabels, opt Options) *Collector {
	if opt.MaxSeries <= 0 {
		opt.MaxSeries = 1000
	}
	if opt.MaxAge <= 0 {
		opt.MaxAge = time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	if opt.Wait <= 0 {
		opt.Wait = time.Second
	}
	if opt.Workers <= 0 {
		opt.Workers = 8
	}
	subLabels := []string{"subscription", "customer", "plan"}
	return &Collector{src: src, labels: labels, opt: opt, labelMemo: map[string][2]string{}, plans: map[string]bool{},
		descLow: prometheus.NewDesc("creditmeter_balance_low_credits",
			"Balance in credits of a subscription below its low-balance threshold; only low subscriptions have this series.", subLabels, nil),
		descExhausted: prometheus.NewDesc("creditmeter_balance_exhausted",
			"1 for a low subscription with no credits available now (available balance <= 0); absent otherwise.", subLabels, nil),
		descLowByPlan: prometheus.NewDesc("creditmeter_balances_low",
			"Subscriptions below their low-balance threshold, by plan (listed ones only, see creditmeter_balances_low_unlisted).", []string{"plan"}, nil),
		descExhaustedByPlan: prometheus.NewDesc("creditmeter_balances_exhausted",
			"Low subscriptions with no credits available now, by plan.", []string{"plan"}, nil),
		descUnlisted: prometheus.NewDesc("creditmeter_balances_low_unlisted",
			"Low subscriptions beyond the per-subscription series cap, not broken down.", nil, nil),
		descErrs: prometheus.NewDesc("creditmeter_low_balance_refresh_errors_total",
			"Failed reads of the low balances; the last good reading is served meanwhile.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.descLow, c.descExhausted, c.descLowByPlan, c.descExhaustedByPlan, c.descUnlisted, c.descErrs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A slow Redis must not fail the
// scrape (the engine's own series matter most then), so it waits at most
// Wait for a refresh and otherwise serves the last reading.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.opt.Active != nil && !c.opt.Active() {
		c.mu.Lock()
		errs := c.errs
		c.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(c.descErrs, prometheus.CounterValue, errs)
		return
	}
	c.mu.Lock()
	if c.running == nil && time.Since(c.at) >= c.opt.MaxAge {
		c.running = make(chan struct{})
		go c.refreshNow(c.running, c.labelMemo)
	}
	running := c.running
	c.mu.Unlock()
	if running != nil {
		t := time.NewTimer(c.opt.Wait)
		select {
		case <-running:
		case <-t.C:
		}
		t.Stop()
	}
	low, exhausted := map[string]int{}, map[string]int{}
	c.mu.Lock()
	snap, unlisted, errs := c.snap, c.unlisted, c.errs
	for _, s := range snap {
		c.plans[s.plan] = true
	}
	// A plan once low stays at 0 rather than vanishing (plans are few).
	for p := range c.plans {
		low[p] = 0
	}
	c.mu.Unlock()

	for _, s := range snap {
		ch <- prometheus.MustNewConstMetric(c.descLow, prometheus.GaugeValue, credits(s.total), s.sub, s.customer, s.plan)
		low[s.plan]++
		if s.exhausted {
			ch <- prometheus.MustNewConstMetric(c.descExhausted, prometheus.GaugeValue, 1, s.sub, s.customer, s.plan)
			exhausted[s.plan]++
		}
	}
	for p, n := range low {
		ch <- prometheus.MustNewConstMetric(c.descLowByPlan, prometheus.GaugeValue, float64(n), p)
		ch <- prometheus.MustNewConstMetric(c.descExhaustedByPlan, prometheus.GaugeValue, float64(exhausted[p]), p)
	}
	ch <- prometheus.MustNewConstMetric(c.descUnlisted, prometheus.GaugeValue, float64(unlisted))
	ch <- prometheus.MustNewConstMetric(c.descErrs, prometheus.CounterValue, errs)
}

func credits(a credit.Amount) float64 { return float64(a) / float64(credit.Unit) }

// refreshNow runs one refresh and publishes its result.
func (c *Collector) refreshNow(done chan struct{}, memo map[string][2]string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.Timeout)
	snap, unlisted, memo, err := c.refresh(ctx, memo)
	cancel()
	c.mu.Lock()
	if err != nil {
		c.errs++
	} else {
		c.snap, c.unlisted, c.labelMemo = snap, unlisted, memo
	}
	// Also after a failure: a Redis outage costs one attempt per MaxAge.
	c.at = time.Now()
	c.running = nil
	c.mu.Unlock()
	close(done)
}

// refresh reads the low set and the balances of its first MaxSeries
// members, labelled from memo or the catalog.
func (c *Collector) refresh(ctx context.Context, memo map[string][2]string) ([]lowSub, int, map[string][2]string, error) {
	subs, err := c.src.LowSubscriptions(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	unlisted := 0
	if len(subs) > c.opt.MaxSeries {
		// LowSubscriptions is sorted, so the listed ones stay the same between scrapes.
		unlisted = len(subs) - c.opt.MaxSeries
		subs = subs[:c.opt.MaxSeries]
	}
	out := make([]lowSub, len(subs))
	keep := make([]bool, len(subs))
	errs := make([]error, len(subs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(c.opt.Workers, len(subs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				keep[i], errs[i] = c.read(ctx, subs[i], memo, &out[i])
			}
		}()
	}
	for i := range subs {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, nil, err
	}
	snap := out[:0]
	next := make(map[string][2]string, len(subs))
	for i := range out {
		if keep[i] {
			snap = append(snap, out[i])
			if out[i].labeled {
				next[out[i].sub] = [2]string{out[i].customer, out[i].plan}
			}
		}
	}
	return snap, unlisted, next, nil
}

// read fills s with sub's balance and labels; false when sub is no longer
// low (a crossing between the two reads) or has no account.
func (c *Collector) read(ctx context.Context, sub string, memo map[string][2]string, s *lowSub) (bool, error) {
	v, err := c.src.Balance(ctx, sub)
	if errors.Is(err, balance.ErrUnknownSubscription) {
		return false, nil
	}
	if err != nil || !v.Low {
		return false, err
	}
	*s = lowSub{sub: sub, total: v.Total, exhausted: v.Available <= 0}
	if l, ok := memo[sub]; ok {
		s.customer, s.plan, s.labeled = l[0], l[1], true
		return true, nil
	}
	s.customer, s.plan = "unknown", "unknown"
	if c.labels != nil {
		// A catalog miss must not hide a low balance: it is listed with
		// "unknown" labels and looked up again next time.
		if cust, plan, err := c.labels(ctx, sub); err == nil {
			s.customer, s.plan, s.labeled = cust, plan, true
		}
	}
	return true, nil
}

// LowSetRepairer rebuilds the low set from the accounts (balance.Store).
type LowSetRepairer interface {
	RepairLow(ctx context.Context, subs []string) (added, removed int, err error)
}

// KeepLowSetRepaired repairs the low set every interval until ctx ends, so
// a crossing whose set update was lost (a crash between the script and the
// update) is listed again; run it under a lease. list gives the
// subscriptions to check (serve: the catalog's); report hears of failures
// and of repairs made.
func KeepLowSetRepaired(ctx context.Context, r LowSetRepairer, list func(context.Context) ([]string, error), interval time.Duration, report func(added, removed int, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		subs, err := list(ctx)
		added, removed := 0, 0
		if err == nil {
			added, removed, err = r.RepairLow(ctx, subs)
		}
		if report != nil && ctx.Err() == nil && (err != nil || added+removed > 0) {
			report(added, removed, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
