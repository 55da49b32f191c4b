package accounts

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditmeter/creditmeter/balance"
)

// AccountObserver hears of every top-up and adjustment Accounts makes, so
// the API can be counted without depending on Prometheus.
type AccountObserver interface {
	ObserveTopUp(req balance.TopUpRequest, res balance.ChangeResult, err error)
	ObserveAdjust(req balance.AdjustRequest, res balance.ChangeResult, err error)
}

// AccountMetrics counts top-ups and adjustments. Labels are fixed sets:
// result (applied, replayed, refused, failed) and direction (add, deduct).
type AccountMetrics struct {
	TopUps          *prometheus.CounterVec // result
	TopUpCredits    prometheus.Counter
	Adjustments     *prometheus.CounterVec // direction, result
	AdjustedCredits *prometheus.CounterVec // direction
	crossings       *prometheus.CounterVec // the engine's, when given
}

// NewAccountMetrics registers the top-up and adjustment metrics on reg. With
// crossings (the engine's creditmeter_low_balance_crossings_total), the
// low-balance crossings top-ups and adjustments cause are counted there too.
func NewAccountMetrics(reg prometheus.Registerer, crossings *prometheus.CounterVec) *AccountMetrics {
	a := &AccountMetrics{
		TopUps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_topups_total",
			Help: "Top-up requests by result: applied, replayed (same idempotency key), refused (outside the plan's limits, unknown subscription, conflict), failed (Redis)."},
			[]string{"result"}),
		TopUpCredits: prometheus.NewCounter(prometheus.CounterOpts{Name: "creditmeter_topup_credits_total",
			Help: "Credits bought by applied top-ups."}),
		Adjustments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_adjustments_total",
			Help: "Admin adjustments by direction (add, deduct) and result (applied, replayed, refused, failed)."},
			[]string{"direction", "result"}),
		AdjustedCredits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_adjustment_credits_total",
			Help: "Credits added or deducted by applied adjustments, by direction."}, []string{"direction"}),
	}
	reg.MustRegister(a.TopUps, a.TopUpCredits, a.Adjustments, a.AdjustedCredits)
	for _, r := range []string{"applied", "replayed", "refused", "failed"} {
		a.TopUps.WithLabelValues(r)
		for _, d := range []string{"add", "deduct"} {
			a.Adjustments.WithLabelValues(d, r)
		}
	}
	for _, d := range []string{"add", "deduct"} {
		a.AdjustedCredits.WithLabelValues(d)
	}
	a.crossings = crossings
	return a
}

func changeResult(res balance.ChangeResult, err error) string {
	switch {
	case err == nil && res.Replayed:
		return "replayed"
	case err == nil:
		return "applied"
	case balance.Retryable(err):
		return "failed"
	}
	return "refused"
}

func (a *AccountMetrics) crossed(res balance.ChangeResult, err error) {
	if a.crossings == nil || err != nil || res.Replayed {
		return
	}
	switch res.Crossing {
	case balance.WentLow:
		a.crossings.WithLabelValues("down").Inc()
	case balance.WentOK:
		a.crossings.WithLabelValues("up").Inc()
	}
}

// ObserveTopUp implements AccountObserver.
func (a *AccountMetrics) ObserveTopUp(req balance.TopUpRequest, res balance.ChangeResult, err error) {
	r := changeResult(res, err)
	a.TopUps.WithLabelValues(r).Inc()
	if r == "applied" {
		a.TopUpCredits.Add(credits(req.Amount))
	}
	a.crossed(res, err)
}

// ObserveAdjust implements AccountObserver.
func (a *AccountMetrics) ObserveAdjust(req balance.AdjustRequest, res balance.ChangeResult, err error) {
	d, amt := "add", req.Amount
	if amt < 0 {
		d, amt = "deduct", -amt
	}
	r := changeResult(res, err)
	a.Adjustments.WithLabelValues(d, r).Inc()
	if r == "applied" {
		a.AdjustedCredits.WithLabelValues(d).Add(credits(amt))
	}
	a.crossed(res, err)
}
