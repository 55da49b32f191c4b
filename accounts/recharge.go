package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// Recharger buys a subscription's auto-recharge amount when its available
// balance is below its threshold. The crossing is named by the latest
// grant the balance fell from: the balance was at or above the threshold
// right after the grant at seq G and is below it now, so the top-up's
// idempotency key is "auto-recharge:G". Every node, every retry and every
// restart derives the same key, so a crossing buys exactly one top-up; the
// top-up itself is a new grant, so the next crossing has a new key. A
// grant that left the balance below the threshold (a recharge too small)
// starts no new crossing, so a recharge never loops. Run it under a lease
// (one recharge in flight per deployment); two at once still buy once.
type Recharger struct {
	Accounts *Accounts
	// List gives the subscriptions to check (serve: the catalog's).
	List func(ctx context.Context) ([]SubscriptionRef, error)
	// Pay charges the payment method before the credits are granted (the
	// payment provider; key is the top-up's idempotency key, for its own
	// dedupe); nil: paid on account. An error is a declined payment:
	// recorded, counted, retried after Backoff.
	Pay func(ctx context.Context, sub, key string, amount credit.Amount) error
	// Backoff is the wait after each failed attempt, the last repeated
	// (default 1m, 5m, 15m, 1h).
	Backoff []time.Duration
	// Notify hears of each recharge made or failed (webhooks).
	Notify  func(sub string, st balance.RechargeState, amount credit.Amount)
	Metrics *RechargeMetrics
	Log     *slog.Logger
	Now     func() time.Time
}

// RechargeMetrics counts auto-recharges by result (made, failed) and
// shows the subscriptions whose latest crossing is failing.
type RechargeMetrics struct {
	Recharges *prometheus.CounterVec
	Failing   prometheus.Gauge
}

// NewRechargeMetrics registers creditmeter_auto_recharges_total and
// creditmeter_auto_recharge_failing on reg.
func NewRechargeMetrics(reg prometheus.Registerer) *RechargeMetrics {
	m := &RechargeMetrics{
		Recharges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_auto_recharges_total",
			Help: "Automatic recharges by result: made (a top-up bought), failed (payment declined or top-up refused; retried with backoff)."}, []string{"result"}),
		Failing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "creditmeter_auto_recharge_failing",
			Help: "Subscriptions whose latest auto-recharge attempt failed (as of the last sweep)."}),
	}
	reg.MustRegister(m.Recharges, m.Failing)
	m.Recharges.WithLabelValues("made")
	m.Recharges.WithLabelValues("failed")
	return m
}

var defaultBackoff = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour}

func (r *Recharger) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Recharger) backoff(attempt int) time.Duration {
	b := r.Backoff
	if len(b) == 0 {
		b = defaultBackoff
	}
	return b[min(attempt, len(b))-1]
}

// RechargeResult counts what one pass did.
type RechargeResult struct{ Checked, Made, Failed int }

// Once checks every subscription once.
func (r *Recharger) Once(ctx context.Context) (RechargeResult, error) {
	var res RechargeResult
	subs, err := r.List(ctx)
	if err != nil {
		return res, fmt.Errorf("auto-recharge: listing subscriptions: %w", err)
	}
	ids := make([]string, len(subs))
	for i, s := range subs {
		ids[i] = s.ID
	}
	enabled, err := r.Accounts.Store.AutoRechargeEnabled(ctx, ids)
	if err != nil {
		return res, fmt.Errorf("auto-recharge: %w", err)
	}
	var errs []error
	failing := 0
	for i, s := range subs {
		if !enabled[i] {
			continue
		}
		res.Checked++
		made, failed, err := r.one(ctx, s)
		if made {
			res.Made++
		}
		if failed {
			res.Failed++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("auto-recharge of %s: %w", s.ID, err))
		}
		if st, ok, _ := r.Accounts.Store.RechargeState(ctx, s.ID); ok && st.Status == "failed" {
			failing++
		}
	}
	if r.Metrics != nil {
		r.Metrics.Failing.Set(float64(failing))
	}
	return res, errors.Join(errs...)
}

func (r *Recharger) one(ctx context.Context, s SubscriptionRef) (made, failed bool, err error) {
	st := r.Accounts.Store
	cfg, err := st.AutoRecharge(ctx, s.ID)
	if errors.Is(err, balance.ErrUnknownSubscription) || (err == nil && !cfg.Enabled) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	// The latest grant, read before and after the balance: unchanged, the
	// balance read was below the threshold since that grant (seqs only
	// grow). Otherwise a grant (maybe this crossing's top-up, by another
	// node) came in between: the next pass decides.
	g, after, ok, err := st.LastGrant(ctx, s.ID)
	if err != nil || !ok || after < cfg.Threshold {
		return false, false, err // no crossing since the latest grant
	}
	chk, err := st.Check(ctx, s.ID, 0)
	if err != nil || chk.Available >= cfg.Threshold {
		return false, false, err
	}
	if g2, _, _, err := st.LastGrant(ctx, s.ID); err != nil || g2 != g {
		return false, false, err
	}
	prev, _, err := st.RechargeState(ctx, s.ID)
	if err != nil {
		return false, false, err
	}
	now := r.now()
	next := balance.RechargeState{Crossing: g, Attempts: 1, UpdatedAt: now}
	if prev.Crossing == g {
		if prev.Status == "done" || (prev.Status == "failed" && now.Before(prev.NextAttempt)) {
			return false, false, nil
		}
		next.Attempts = prev.Attempts + 1
	}
	key := "auto-recharge:" + strconv.FormatInt(g, 10)
	fail := func(cause error) (bool, bool, error) {
		next.Status, next.LastError, next.NextAttempt = "failed", cause.Error(), now.Add(r.backoff(next.Attempts))
		if r.Metrics != nil {
			r.Metrics.Recharges.WithLabelValues("failed").Inc()
		}
		if r.Log != nil {
			r.Log.Warn("auto-recharge failed", "subscription", s.ID, "crossing", g, "attempt", next.Attempts, "retry_at", next.NextAttempt, "err", cause)
		}
		if r.Notify != nil {
			r.Notify(s.ID, next, cfg.Amount)
		}
		return false, true, st.SaveRechargeState(ctx, s.ID, next)
	}
	if r.Pay != nil {
		if err := r.Pay(ctx, s.ID, key, cfg.Amount); err != nil {
			if ctx.Err() != nil {
				return false, false, err
			}
			return fail(fmt.Errorf("payment: %w", err))
		}
	}
	res, err := r.Accounts.TopUp(ctx, balance.TopUpRequest{Key: key, Subscription: s.ID, Amount: cfg.Amount}, s.Customer)
	var na *NotArchivedError
	var undone *UndoneError
	switch {
	case err == nil:
	case balance.Retryable(err) || ctx.Err() != nil || errors.As(err, &na) || errors.As(err, &undone):
		return false, false, err // the next pass sends the same key: made once, archived
	default:
		return fail(err) // refused: above the maximum, the purchase limit, too many grants
	}
	next.Status, next.TopUpSeq = "done", res.Seq
	if !res.Replayed && r.Metrics != nil {
		r.Metrics.Recharges.WithLabelValues("made").Inc()
	}
	if !res.Replayed && r.Notify != nil {
		r.Notify(s.ID, next, cfg.Amount)
	}
	return !res.Replayed, false, st.SaveRechargeState(ctx, s.ID, next)
}

// Run checks every interval until ctx ends (run it under a lease).
func (r *Recharger) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Once(ctx); err != nil && ctx.Err() == nil && r.Log != nil {
			r.Log.Warn("auto-recharge", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// AutoRecharge is the subscription's auto-recharge and its latest state.
func (a *Accounts) AutoRecharge(ctx context.Context, sub string) (balance.AutoRecharge, *balance.RechargeState, error) {
	cfg, err := a.Store.AutoRecharge(ctx, sub)
	if err != nil {
		return cfg, nil, err
	}
	st, ok, err := a.Store.RechargeState(ctx, sub)
	if err != nil || !ok {
		return cfg, nil, err
	}
	return cfg, &st, nil
}

// SetAutoRecharge overrides the plan's auto-recharge (nil: the plan's).
func (a *Accounts) SetAutoRecharge(ctx context.Context, sub string, o *balance.AutoRecharge) error {
	return a.Store.SetAutoRecharge(ctx, sub, o)
}
