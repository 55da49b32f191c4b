package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
)

// Recharges are auto-recharge's settings and state (accounts.Accounts).
type Recharges interface {
	AutoRecharge(ctx context.Context, sub string) (balance.AutoRecharge, *balance.RechargeState, error)
	SetAutoRecharge(ctx context.Context, sub string, o *balance.AutoRecharge) error
}

// AutoRechargeJSON is GET /v1/subscriptions/{id}/auto-recharge.
type AutoRechargeJSON struct {
	Enabled   bool               `json:"enabled"`
	Threshold *credit.Amount     `json:"threshold,omitempty"`
	Amount    *credit.Amount     `json:"amount,omitempty"`
	Source    string             `json:"source"`
	Last      *RechargeStateJSON `json:"last"`
}

// RechargeStateJSON is the latest crossing's recharge.
type RechargeStateJSON struct {
	CrossingSeq   int64      `json:"crossing_seq"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	TopUpSeq      int64      `json:"topup_seq,omitempty"`
	TopUpID       string     `json:"topup_id,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func (s *Server) recharges() (Recharges, error) {
	r, ok := s.balances.(Recharges)
	if !ok {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "auto-recharge is not configured"}
	}
	return r, nil
}

func (s *Server) getAutoRecharge(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	rc, err := s.recharges()
	if err != nil {
		return err
	}
	return writeAutoRecharge(w, r, rc, sub.ID)
}

// writeAutoRecharge answers with the subscription's auto-recharge and its
// last run.
func writeAutoRecharge(w http.ResponseWriter, r *http.Request, rc Recharges, subID string) error {
	cfg, st, err := rc.AutoRecharge(r.Context(), subID)
	if err != nil {
		return balanceError(err)
	}
	out := AutoRechargeJSON{Enabled: cfg.Enabled, Source: cfg.Source}
	if cfg.Enabled {
		out.Threshold, out.Amount = &cfg.Threshold, &cfg.Amount
	}
	if st != nil {
		j := &RechargeStateJSON{CrossingSeq: st.Crossing, Status: st.Status, Attempts: st.Attempts, LastError: st.LastError, TopUpSeq: st.TopUpSeq, TopUpID: st.TopUpID, UpdatedAt: st.UpdatedAt}
		if st.Status == "failed" && !st.NextAttempt.IsZero() {
			t := st.NextAttempt
			j.NextAttemptAt = &t
		}
		out.Last = j
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type autoRechargeRequest struct {
	Enabled   *bool          `json:"enabled"`
	Threshold *credit.Amount `json:"threshold"`
	Amount    *credit.Amount `json:"amount"`
}

// putAutoRecharge overrides the plan's auto-recharge for the subscription.
func (s *Server) putAutoRecharge(w http.ResponseWriter, r *http.Request, who principal) error {
	var req autoRechargeRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "enabled", Message: "enabled is required"}
	}
	o := &balance.AutoRecharge{Enabled: *req.Enabled}
	if o.Enabled {
		switch {
		case req.Threshold == nil || *req.Threshold <= 0:
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "threshold", Message: "threshold must be positive: recharge when the available balance falls below it"}
		case req.Amount == nil || *req.Amount <= 0:
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "amount", Message: "amount must be positive: the credits each recharge buys"}
		}
		o.Threshold, o.Amount = *req.Threshold, *req.Amount
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	if plan, err := s.cat.Plan(r.Context(), sub.PlanID); err == nil && plan.Prepaid != nil && o.Enabled {
		pc := plan.Prepaid
		if (pc.MinPurchase != nil && o.Amount < *pc.MinPurchase) || (pc.MaxPurchase != nil && o.Amount > *pc.MaxPurchase) {
			return &Error{Status: http.StatusUnprocessableEntity, Code: "outside_purchase_bounds", Field: "amount",
				Message: fmt.Sprintf("a recharge of %s must be within the plan's minimum and maximum purchase", o.Amount)}
		}
	}
	rc, err := s.recharges()
	if err != nil {
		return err
	}
	if err := rc.SetAutoRecharge(r.Context(), sub.ID, o); err != nil {
		return balanceError(err)
	}
	return writeAutoRecharge(w, r, rc, sub.ID)
}

// deleteAutoRecharge goes back to the plan's auto-recharge.
func (s *Server) deleteAutoRecharge(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	rc, err := s.recharges()
	if err != nil {
		return err
	}
	if err := rc.SetAutoRecharge(r.Context(), sub.ID, nil); err != nil {
		return balanceError(err)
	}
	return writeAutoRecharge(w, r, rc, sub.ID)
}
