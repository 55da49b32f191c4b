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
	"github.com/creditmeter/creditmeter/rating"
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
	// Payment gives the subscription's plan's payment terms (nil: paid at once).
	Payment func(ctx context.Context, s SubscriptionRef) (*rating.PaymentTerms, error)
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
	prev, hasPrev, err := st.RechargeState(ctx, s.ID)
	if err != nil {
		return false, false, err
	}
	var prevp *balance.RechargeState
	if hasPrev {
		prevp = &prev
	}
	if prev.Status == "pending" {
		// at most one in flight: its confirmation, expiry or decline decides
		return r.settle(ctx, s, cfg, prev)
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
	now := r.now()
	next := balance.RechargeState{Crossing: g, Attempts: 1, UpdatedAt: now}
	if prev.Crossing == g {
		if prev.Status == "done" || (prev.Status == "failed" && now.Before(prev.NextAttempt)) {
			return false, false, nil
		}
		next.Attempts = prev.Attempts + 1
	}
	key := "auto-recharge:" + strconv.FormatInt(g, 10)
	var terms *rating.PaymentTerms
	if r.Payment != nil {
		if terms, err = r.Payment(ctx, s); err != nil {
			return false, false, err
		}
	}
	if terms != nil && terms.ConfirmationRequired {
		if next.Attempts > 1 {
			key += "#" + strconv.Itoa(next.Attempts) // the earlier attempt's top-up expired or failed
		}
		return r.pending(ctx, s, cfg, prevp, next, key, terms.PaymentExpiry())
	}
	if r.Pay != nil {
		if err := r.Pay(ctx, s.ID, key, cfg.Amount); err != nil {
			if ctx.Err() != nil {
				return false, false, err
			}
			return r.fail(ctx, s, cfg, prevp, next, fmt.Errorf("payment: %w", err))
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
		return r.fail(ctx, s, cfg, prevp, next, err) // refused: above the maximum, the purchase limit, too many grants
	}
	next.Status, next.TopUpSeq = "done", res.Seq
	if !res.Replayed && r.Metrics != nil {
		r.Metrics.Recharges.WithLabelValues("made").Inc()
	}
	if !res.Replayed && r.Notify != nil {
		r.Notify(s.ID, next, cfg.Amount)
	}
	_, err = st.SwapRechargeState(ctx, s.ID, prevp, next)
	return !res.Replayed, false, err
}

// fail records a failed attempt (retried after the backoff) and tells of
// it, once: a recharger that lost the race to record it says nothing.
func (r *Recharger) fail(ctx context.Context, s SubscriptionRef, cfg balance.AutoRecharge, prev *balance.RechargeState, next balance.RechargeState, cause error) (bool, bool, error) {
	next.Status, next.LastError, next.NextAttempt = "failed", cause.Error(), next.UpdatedAt.Add(r.backoff(next.Attempts))
	swapped, err := r.Accounts.Store.SwapRechargeState(ctx, s.ID, prev, next)
	if err != nil || !swapped {
		return false, false, err
	}
	if r.Metrics != nil {
		r.Metrics.Recharges.WithLabelValues("failed").Inc()
	}
	if r.Log != nil {
		r.Log.Warn("auto-recharge failed", "subscription", s.ID, "crossing", next.Crossing, "attempt", next.Attempts, "retry_at", next.NextAttempt, "err", cause)
	}
	if r.Notify != nil {
		r.Notify(s.ID, next, cfg.Amount)
	}
	return false, true, nil
}

// pending creates the crossing's pending top-up (plans requiring payment
// confirmation). Its id derives from key, so every node, retry and restart
// creates the same one; it becomes credits when confirmed (API or payment
// callback), which settle then records.
func (r *Recharger) pending(ctx context.Context, s SubscriptionRef, cfg balance.AutoRecharge, prev *balance.RechargeState, next balance.RechargeState, key string, ttl time.Duration) (bool, bool, error) {
	p, _, err := r.Accounts.CreatePending(ctx, balance.PendingRequest{Key: key, Subscription: s.ID, Amount: cfg.Amount, TTL: ttl})
	if errors.Is(err, balance.ErrConflict) {
		// made before a crash with the amount then: it is this attempt's
		p, err = r.Accounts.PendingTopUp(ctx, s.ID, balance.PendingID(s.ID, key))
	}
	switch {
	case err == nil:
	case balance.Retryable(err) || ctx.Err() != nil:
		return false, false, err
	default:
		return r.fail(ctx, s, cfg, prev, next, err) // refused: the bounds, the purchase limit
	}
	next.Status, next.TopUpID = "pending", p.ID
	swapped, err := r.Accounts.Store.SwapRechargeState(ctx, s.ID, prev, next)
	if err != nil || !swapped {
		return false, false, err
	}
	if r.Log != nil {
		r.Log.Info("auto-recharge waits for its payment", "subscription", s.ID, "crossing", next.Crossing, "attempt", next.Attempts, "topup", p.ID)
	}
	if p.Status != balance.TopUpPending && p.Status != balance.TopUpConfirming {
		return r.settle(ctx, s, cfg, next) // replayed after a crash: it ended meanwhile
	}
	return false, false, nil
}

// settle records the end of the crossing's pending top-up: confirmed is
// the crossing's recharge (done); expired or declined is a failed attempt,
// retried after the backoff with a new pending top-up.
func (r *Recharger) settle(ctx context.Context, s SubscriptionRef, cfg balance.AutoRecharge, prev balance.RechargeState) (bool, bool, error) {
	p, err := r.Accounts.PendingTopUp(ctx, s.ID, prev.TopUpID)
	if err != nil && !errors.Is(err, balance.ErrTopUpNotFound) {
		return false, false, err
	}
	next := prev
	next.UpdatedAt = r.now()
	switch {
	case err != nil:
		return r.fail(ctx, s, cfg, &prev, next, fmt.Errorf("pending top-up %s is gone", prev.TopUpID))
	case p.Status == balance.TopUpPending || p.Status == balance.TopUpConfirming:
		return false, false, nil
	case p.Status == balance.TopUpConfirmed:
		next.Status, next.TopUpSeq = "done", p.Seq
		swapped, err := r.Accounts.Store.SwapRechargeState(ctx, s.ID, &prev, next)
		if err != nil || !swapped {
			return false, false, err
		}
		if r.Metrics != nil {
			r.Metrics.Recharges.WithLabelValues("made").Inc()
		}
		if r.Notify != nil {
			r.Notify(s.ID, next, cfg.Amount)
		}
		return true, false, nil
	case p.Status == balance.TopUpExpired:
		return r.fail(ctx, s, cfg, &prev, next, fmt.Errorf("payment: top-up %s expired unconfirmed", p.ID))
	default:
		reason := p.Reason
		if reason == "" {
			reason = p.Status
		}
		return r.fail(ctx, s, cfg, &prev, next, fmt.Errorf("payment: top-up %s %s: %s", p.ID, p.Status, reason))
	}
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
