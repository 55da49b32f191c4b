package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

// Payments are the pending top-ups' paths (accounts.Accounts); Balances
// without them cannot serve plans that require payment confirmation.
type Payments interface {
	CreatePending(ctx context.Context, req balance.PendingRequest) (balance.PendingTopUp, bool, error)
	PendingTopUp(ctx context.Context, sub, id string) (balance.PendingTopUp, error)
	ConfirmTopUp(ctx context.Context, sub, id string) (balance.PendingTopUp, balance.ChangeResult, error)
	FailTopUp(ctx context.Context, sub, id, reason string) (balance.PendingTopUp, error)
}

// HeaderPaymentSignature signs a payment provider's callback: the scheme
// of webhook deliveries (t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>">) with the shared secret of --payment-callback-secret.
const HeaderPaymentSignature = "Creditmeter-Signature"

// paymentTolerance bounds a callback's signature age (replays).
const paymentTolerance = 5 * time.Minute

// TopUpJSON is a top-up that waits (or waited) for its payment.
type TopUpJSON struct {
	ID             string          `json:"id"`
	SubscriptionID string          `json:"subscription_id"`
	Status         string          `json:"status"`
	Amount         credit.Amount   `json:"amount"`
	Charge         decimal.Decimal `json:"charge"`
	Currency       string          `json:"currency"`
	CreatedAt      time.Time       `json:"created_at"`
	ExpiresAt      time.Time       `json:"expires_at"`
	EndedAt        *time.Time      `json:"ended_at,omitempty"`
	Seq            int64           `json:"seq,omitempty"`
	GrantID        string          `json:"grant_id,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Balance        *credit.Amount  `json:"balance,omitempty"`
	Replayed       bool            `json:"replayed"`
}

func topUpJSON(p balance.PendingTopUp) TopUpJSON {
	j := TopUpJSON{ID: p.ID, SubscriptionID: p.Subscription, Status: p.Status, Amount: p.Amount, Charge: p.Charge, Currency: p.Currency,
		CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt, Seq: p.Seq, GrantID: p.GrantID, Reason: p.Reason}
	if !p.EndedAt.IsZero() {
		t := p.EndedAt
		j.EndedAt = &t
	}
	if p.Status == balance.TopUpConfirming {
		j.Status = balance.TopUpPending // being confirmed: not yet credits
	}
	return j
}

func (s *Server) payments() (Payments, error) {
	p, ok := s.balances.(Payments)
	if !ok {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "payment confirmation is not configured"}
	}
	return p, nil
}

// paymentTerms are the plan's payment terms; nil: top-ups are paid at once.
func (s *Server) paymentTerms(ctx context.Context, sub *rating.Subscription) *rating.PaymentTerms {
	plan, err := s.cat.Plan(ctx, sub.PlanID)
	if err != nil || plan.Prepaid == nil || plan.Prepaid.Payment == nil || !plan.Prepaid.Payment.ConfirmationRequired {
		return nil
	}
	return plan.Prepaid.Payment
}

// pendingTopUp creates the top-up of a plan requiring payment confirmation.
func (s *Server) pendingTopUp(w http.ResponseWriter, r *http.Request, sub *rating.Subscription, key string, amount credit.Amount, terms *rating.PaymentTerms) error {
	pay, err := s.payments()
	if err != nil {
		return err
	}
	p, replayed, err := pay.CreatePending(r.Context(), balance.PendingRequest{Key: key, Subscription: sub.ID, Amount: amount, TTL: terms.PaymentExpiry()})
	if err != nil {
		return s.limitError(r.Context(), sub, amount, s.changeError(r, err))
	}
	status := http.StatusAccepted
	if replayed {
		status = http.StatusOK
	}
	j := topUpJSON(p)
	j.Replayed = replayed
	writeJSON(w, status, j)
	return nil
}

// pendingLister lists a subscription's pending top-ups (accounts.Accounts).
type pendingLister interface {
	PendingTopUps(ctx context.Context, sub string) ([]balance.PendingTopUp, error)
}

// listTopUps pages the subscription's pending (and ended) top-ups by id,
// optionally of one status.
func (s *Server) listTopUps(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "", balance.TopUpPending, balance.TopUpConfirmed, balance.TopUpFailed, balance.TopUpExpired:
	default:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "status", Message: "status must be pending, confirmed, failed or expired"}
	}
	l, ok := s.balances.(pendingLister)
	if !ok {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "payment confirmation is not configured"}
	}
	ps, err := l.PendingTopUps(r.Context(), sub.ID)
	if err != nil {
		return balanceError(err)
	}
	v := make([]TopUpJSON, 0, len(ps))
	for _, p := range ps {
		if j := topUpJSON(p); status == "" || j.Status == status {
			v = append(v, j)
		}
	}
	sort.Slice(v, func(i, k int) bool { return v[i].ID < v[k].ID })
	topUpID := func(t TopUpJSON) string { return t.ID }
	v, more := pageOf(v, topUpID, after, limit)
	return page(w, v, more, topUpID, nil)
}

func (s *Server) getTopUp(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	pay, err := s.payments()
	if err != nil {
		return err
	}
	p, err := pay.PendingTopUp(r.Context(), sub.ID, r.PathValue("topup_id"))
	if err != nil {
		return topUpError(err)
	}
	writeJSON(w, http.StatusOK, topUpJSON(p))
	return nil
}

func (s *Server) confirmTopUp(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	return s.confirm(w, r, sub.ID, r.PathValue("topup_id"))
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request, sub, id string) error {
	pay, err := s.payments()
	if err != nil {
		return err
	}
	p, res, err := pay.ConfirmTopUp(r.Context(), sub, id)
	if err != nil {
		return topUpError(s.changeError(r, err))
	}
	j := topUpJSON(p)
	j.Replayed, j.Balance = res.Replayed, &res.Balance
	writeJSON(w, http.StatusOK, j)
	return nil
}

// topUpError maps a pending top-up's own errors.
func topUpError(err error) error {
	var ended *balance.TopUpEndedError
	switch {
	case errors.Is(err, balance.ErrTopUpNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Field: "topup_id", Message: "no such top-up on this subscription"}
	case errors.As(err, &ended):
		return &Error{Status: http.StatusConflict, Code: "topup_" + ended.TopUp.Status, Field: "topup_id",
			Message: "the top-up is " + ended.TopUp.Status + " and cannot be confirmed; create a new one"}
	}
	return balanceError(err)
}

type paymentCallback struct {
	SubscriptionID string `json:"subscription_id"`
	TopUpID        string `json:"topup_id"`
	Status         string `json:"status"` // succeeded | failed
	Reason         string `json:"reason"`
}

// paymentCallback is the payment provider's word on a pending top-up,
// signed with the shared secret: succeeded confirms it, failed ends it.
func (s *Server) paymentCallback(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.paymentSecret == "" {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "payment callbacks are not configured (--payment-callback-secret)"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return decodeError(err)
	}
	if err := webhook.Verify(s.paymentSecret, r.Header.Get(HeaderPaymentSignature), body, time.Now(), paymentTolerance); err != nil {
		return &Error{Status: http.StatusUnauthorized, Code: "bad_signature", Field: HeaderPaymentSignature,
			Message: "the callback's signature does not match the shared secret, or is older than 5 minutes"}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var cb paymentCallback
	if err := decode(w, r, &cb); err != nil {
		return err
	}
	switch {
	case cb.SubscriptionID == "":
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "subscription_id", Message: "subscription_id is required"}
	case cb.TopUpID == "":
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "topup_id", Message: "topup_id is required"}
	case len(cb.Reason) > maxNote:
		return &Error{Status: http.StatusBadRequest, Code: "too_long", Field: "reason", Message: "a reason is at most 1000 bytes"}
	}
	if s.balances == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the balance ledger is not configured"}
	}
	switch cb.Status {
	case "succeeded":
		return s.confirm(w, r, cb.SubscriptionID, cb.TopUpID)
	case "failed":
		pay, err := s.payments()
		if err != nil {
			return err
		}
		reason := strings.TrimSpace(cb.Reason)
		if reason == "" {
			reason = "payment failed"
		}
		p, err := pay.FailTopUp(r.Context(), cb.SubscriptionID, cb.TopUpID, reason)
		if err != nil {
			return topUpError(err)
		}
		writeJSON(w, http.StatusOK, topUpJSON(p))
		return nil
	}
	return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "status", Message: `status must be "succeeded" or "failed"`}
}
