package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

// cancelRequest is POST /v1/subscriptions/{id}/cancel; no at: now.
type cancelRequest struct {
	At *time.Time `json:"at,omitempty"`
}

// cancelSubscription ends a subscription now or at a date.
func (s *Server) cancelSubscription(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req cancelRequest
	if err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	var at time.Time
	if req.At != nil {
		at = *req.At
	}
	sub, err := s.cat.CancelSubscription(r.Context(), r.PathValue("id"), at)
	if err != nil {
		return err
	}
	s.emitLifecycle(r.Context(), webhook.SubscriptionEnded, sub, "")
	writeJSON(w, http.StatusOK, sub)
	return nil
}

// patchRequest is PATCH /v1/subscriptions/{id}: only its end may change;
// "end_at": null withdraws a cancellation.
type patchRequest struct {
	EndAt json.RawMessage `json:"end_at"`
}

// patchSubscription sets or removes a subscription's end.
func (s *Server) patchSubscription(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req patchRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var sub *rating.Subscription
	var err error
	switch raw := bytes.TrimSpace(req.EndAt); {
	case len(raw) == 0:
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "end_at", Message: "end_at is required: a date-time, or null to withdraw a cancellation"}
	case string(raw) == "null":
		sub, err = s.cat.ReopenSubscription(r.Context(), r.PathValue("id"))
	default:
		var at time.Time
		if json.Unmarshal(raw, &at) != nil {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "end_at", Message: "end_at must be an RFC 3339 date-time or null"}
		}
		sub, err = s.cat.CancelSubscription(r.Context(), r.PathValue("id"), at)
		if err == nil {
			s.emitLifecycle(r.Context(), webhook.SubscriptionEnded, sub, "")
		}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sub)
	return nil
}

// changePlanRequest is POST /v1/subscriptions/{id}/change-plan: the
// successor's terms, and when (no at: now).
type changePlanRequest struct {
	ID          string                   `json:"id,omitempty"`
	PlanID      string                   `json:"plan_id"`
	Currency    string                   `json:"currency,omitempty"`
	CreditValue *decimal.Decimal         `json:"credit_value,omitempty"`
	Included    rating.IncludedCredits   `json:"included_credits"`
	Consumption []rating.ConsumptionRate `json:"consumption,omitempty"`
	Billing     *rating.Billing          `json:"billing,omitempty"`
	At          *time.Time               `json:"at,omitempty"`
}

// planChangeResponse is the two sides of a plan change.
type planChangeResponse struct {
	Previous     *rating.Subscription `json:"previous"`
	Subscription *rating.Subscription `json:"subscription"`
}

// changePlan ends a subscription now or at a date and starts its successor
// on another plan then; the successor's account is opened and its included
// credits granted like a new subscription's (again on a replay, which heals
// a failed hand-over). Remaining credits follow the old plan's on_end rule
// when the old subscription's books close (end + grace window).
func (s *Server) changePlan(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req changePlanRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	next := &rating.Subscription{ID: req.ID, PlanID: req.PlanID, Currency: req.Currency, CreditValue: req.CreditValue,
		Included: req.Included, Consumption: req.Consumption}
	if req.Billing != nil {
		next.Billing = *req.Billing
	}
	var at time.Time
	if req.At != nil {
		at = *req.At
	}
	res, err := s.cat.ChangePlan(r.Context(), r.PathValue("id"), next, at, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	if err := s.openAccount(r.Context(), res.Subscription, res.Plan,
		"api: a plan change's balance account failed",
		"the plan change is stored but the new subscription's balance account is not"); err != nil {
		return err
	}
	s.emitLifecycle(r.Context(), webhook.SubscriptionChanged, res.Previous, res.Subscription.ID)
	return created(w, res.Created, &planChangeResponse{Previous: res.Previous, Subscription: res.Subscription})
}

// emitLifecycle emits subscription.changed or .ended about sub; the id
// carries the end, so a replay emits nothing new and a moved end is news.
func (s *Server) emitLifecycle(ctx context.Context, typ string, sub *rating.Subscription, successor string) {
	if s.hooks == nil || sub.EndAt == nil {
		return
	}
	end := sub.EndAt.UTC().Format(time.RFC3339Nano)
	d := webhook.Data{Subscription: sub.ID, Customer: sub.CustomerID, Plan: sub.PlanID, EndsAt: end, ReplacedBy: successor}
	e := webhook.Event{ID: webhook.EventID(typ, sub.ID, end), Type: typ, Data: d}
	if err := s.hooks.Emit(ctx, e); err != nil {
		s.log.Warn("api: emitting a subscription event failed", "type", typ, "subscription", sub.ID, "err", err)
	}
}

// isStateError maps a refused lifecycle change to 409 into *e.
func isStateError(err error, e **Error) bool {
	var se *catalogstore.StateError
	if !errors.As(err, &se) {
		return false
	}
	*e = &Error{Status: http.StatusConflict, Code: se.Code, Field: se.Field, Message: se.Message}
	return true
}

// decodeOptional is decode for a body that may be empty.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return decodeError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return decode(w, r, v)
}

// refuseEnded refuses buying credits for an ended subscription: nothing
// could use them, and its remaining credits have moved or expired.
func refuseEnded(sub *rating.Subscription) error {
	if sub.Status != rating.StatusEnded {
		return nil
	}
	return &Error{Status: http.StatusConflict, Code: "subscription_ended", Field: "id",
		Message: "subscription " + sub.ID + " ended at " + sub.EndAt.UTC().Format(time.RFC3339Nano) + "; top up its successor or a new subscription"}
}
