package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/rating"
)

// Balances is the balance ledger's read and write paths as the API needs them
// (accounts.Accounts: balance.Store plus export of ledger entries to the archive).
type Balances interface {
	Balance(ctx context.Context, sub string) (balance.BalanceView, error)
	Check(ctx context.Context, sub string, amount credit.Amount) (balance.CheckResult, error)
	Ledger(ctx context.Context, sub string, fromSeq int64, limit int) ([]balance.Entry, error)
	TopUp(ctx context.Context, req balance.TopUpRequest, customer string) (balance.ChangeResult, error)
	Adjust(ctx context.Context, req balance.AdjustRequest, customer string) (balance.ChangeResult, error)
}

// subscriptionFor loads the path's subscription and checks who may use it;
// another customer's subscription is a 404, as for GET /v1/subscriptions/{id}.
func (s *Server) subscriptionFor(r *http.Request, who principal) (*rating.Subscription, error) {
	if s.balances == nil {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the balance ledger is not configured"}
	}
	return s.ownedSubscription(r, who)
}

// notArchived is a balance change stored in Redis whose archive entry is
// not (accounts.NotArchivedError).
type notArchived interface {
	error
	NotArchived() (seq int64, balance credit.Amount)
}

// balanceError maps the ledger's sentinel errors to API errors.
func balanceError(err error) error {
	var e *Error
	var na notArchived
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case errors.As(err, &na):
		seq, bal := na.NotArchived()
		return &Error{Status: http.StatusServiceUnavailable, Code: "archive_unavailable",
			Message: fmt.Sprintf("the balance change is stored (balance %s, seq %d) but its archive entry is not; retry with the same Idempotency-Key", bal, seq)}
	case errors.Is(err, balance.ErrBelowMinimum):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "below_minimum", Field: "amount", Message: err.Error()}
	case errors.Is(err, balance.ErrAboveMaximum):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "above_maximum", Field: "amount", Message: err.Error()}
	case errors.Is(err, balance.ErrInsufficientBalance):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "insufficient_balance", Field: "amount",
			Message: strings.TrimPrefix(err.Error(), "balance: ") + "; set force to deduct anyway (the balance may then go negative)"}
	case errors.Is(err, balance.ErrOutOfRange):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "out_of_range", Field: "amount", Message: err.Error()}
	case errors.Is(err, balance.ErrTooManyGrants):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "too_many_grants", Field: "amount",
			Message: strings.TrimPrefix(err.Error(), "balance: ") + "; credits must be used up or expire before another grant, top-up or positive adjustment"}
	case errors.Is(err, balance.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "idempotency_conflict", Field: "Idempotency-Key", Message: err.Error()}
	case errors.Is(err, balance.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Message: err.Error()}
	case errors.Is(err, balance.ErrUnknownSubscription):
		return &Error{Status: http.StatusNotFound, Code: "no_account", Message: "the subscription has no balance account yet; repeat its creation request"}
	case errors.Is(err, balance.ErrUnreadableResult):
		return &Error{Status: http.StatusInternalServerError, Code: "unreadable_result",
			Message: strings.TrimPrefix(err.Error(), "balance: ") + "; the change was applied: repeating the request with the same " +
				"Idempotency-Key never applies it twice, do not send it under a new Idempotency-Key (see the ledger)"}
	case balance.Retryable(err):
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the balance store is unavailable; retry with the same Idempotency-Key"}
	}
	return err
}

// changeError maps a top-up's or adjustment's error; an unreadable result
// of an applied change is also logged, as any 500.
func (s *Server) changeError(r *http.Request, err error) error {
	if errors.Is(err, balance.ErrUnreadableResult) {
		s.log.Error("api: applied change with an unreadable result", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return balanceError(err)
}

// BalanceJSON is GET /v1/subscriptions/{id}/balance.
type BalanceJSON struct {
	SubscriptionID string        `json:"subscription_id"`
	CreditCurrency string        `json:"credit_currency"`
	Total          credit.Amount `json:"total"`
	Available      credit.Amount `json:"available"`
	Debt           credit.Amount `json:"debt"`
	Unfunded       credit.Amount `json:"unfunded"`
	Low            bool          `json:"low"`
	Policy         string        `json:"policy"`
	Grants         []GrantJSON   `json:"grants"`
	// GrantsTotal counts the live grants; NextOffset, when set, is the
	// offset of the next page of them.
	GrantsTotal int  `json:"grants_total"`
	NextOffset  *int `json:"next_offset"`
}

// grantPage reads the limit and offset of the balance's grant list.
func grantPage(r *http.Request) (limit, offset int, err error) {
	limit = 100
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, 0, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "limit", Message: "limit must be 1 to 1000"}
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "offset", Message: "offset must be a non-negative integer"}
		}
		offset = n
	}
	return limit, offset, nil
}

// GrantJSON is one live grant, in burn-down order.
type GrantJSON struct {
	ID          string        `json:"id"`
	Type        string        `json:"type"`
	Amount      credit.Amount `json:"amount"`
	Remaining   credit.Amount `json:"remaining"`
	EffectiveAt time.Time     `json:"effective_at"`
	ExpiresAt   *time.Time    `json:"expires_at"`
}

func (s *Server) getBalance(w http.ResponseWriter, r *http.Request, who principal) error {
	limit, offset, err := grantPage(r)
	if err != nil {
		return err
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	v, err := s.balances.Balance(r.Context(), sub.ID)
	if err != nil {
		return balanceError(err)
	}
	out := BalanceJSON{SubscriptionID: sub.ID, Total: v.Total, Available: v.Available, Debt: v.Debt,
		Unfunded: v.Unfunded, Low: v.Low, Policy: string(v.Policy), Grants: []GrantJSON{}, GrantsTotal: len(v.Grants)}
	if p, err := s.cat.Plan(r.Context(), sub.PlanID); err == nil && p.Prepaid != nil {
		out.CreditCurrency = p.Prepaid.CreditCurrency
	}
	page := v.Grants[min(offset, len(v.Grants)):]
	if len(page) > limit {
		page = page[:limit]
		next := offset + limit
		out.NextOffset = &next
	}
	for _, g := range page {
		gj := GrantJSON{ID: g.ID, Type: string(g.Type), Amount: g.Amount, Remaining: g.Remaining, EffectiveAt: g.EffectiveAt}
		if !g.ExpiresAt.IsZero() {
			t := g.ExpiresAt
			gj.ExpiresAt = &t
		}
		out.Grants = append(out.Grants, gj)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type checkRequest struct {
	Amount *credit.Amount `json:"amount"` // required: a check of nothing would always be allowed
}

func (s *Server) check(w http.ResponseWriter, r *http.Request, who principal) error {
	var req checkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.Amount == nil:
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "amount", Message: "amount is required: the credits to spend, e.g. {\"amount\": \"5\"}"}
	case *req.Amount < 0:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "amount", Message: "amount must not be negative"}
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	v, err := s.balances.Check(r.Context(), sub.ID, *req.Amount)
	if err != nil {
		return balanceError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"allowed": v.Allowed, "available": v.Available, "policy": string(v.Policy)})
	return nil
}

// EntryJSON is one ledger entry.
type EntryJSON struct {
	Seq      int64            `json:"seq"`
	Kind     string           `json:"kind"`
	Amount   credit.Amount    `json:"amount"`
	Balance  credit.Amount    `json:"balance_after"`
	Time     time.Time        `json:"time"`
	GrantID  string           `json:"grant_id,omitempty"`
	Events   int64            `json:"events,omitempty"`
	Unfunded credit.Amount    `json:"unfunded,omitempty"`
	Reason   string           `json:"reason,omitempty"`
	Actor    string           `json:"actor,omitempty"`
	Note     string           `json:"note,omitempty"`
	Public   bool             `json:"public,omitempty"`
	Charge   *decimal.Decimal `json:"charge,omitempty"`
	Currency string           `json:"currency,omitempty"`
}

func (s *Server) getLedger(w http.ResponseWriter, r *http.Request, who principal) error {
	from, limit := int64(1), 100
	if v := r.URL.Query().Get("from_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "from_seq", Message: "from_seq must be a positive integer"}
		}
		from = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "limit", Message: "limit must be 1 to 1000"}
		}
		limit = n
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	es, err := s.balances.Ledger(r.Context(), sub.ID, from, limit)
	if err != nil {
		return balanceError(err)
	}
	out := make([]EntryJSON, 0, len(es))
	for _, e := range es {
		ej := EntryJSON{Seq: e.Seq, Kind: e.Kind, Amount: e.Amount, Balance: e.Balance, Time: e.Time, GrantID: e.Grant,
			Events: e.Events, Unfunded: e.Unfunded, Reason: e.Fields["reason"], Actor: e.Fields["actor"], Currency: e.Fields["currency"],
			Note: e.Fields["note"], Public: e.Fields["public"] == "1"}
		if !who.admin {
			customerView(&ej)
		}
		if c, err := decimal.NewFromString(e.Fields["charge"]); err == nil {
			ej.Charge = &c
		}
		out = append(out, ej)
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": out})
	return nil
}

func idempotencyKey(r *http.Request) (string, error) {
	k := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if k == "" || len(k) > 200 {
		return "", &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "Idempotency-Key",
			Message: "an Idempotency-Key header of 1 to 200 characters is required, so a retried request counts once"}
	}
	return k, nil
}

type topUpRequest struct {
	Amount credit.Amount `json:"amount"`
}

func (s *Server) topUp(w http.ResponseWriter, r *http.Request, who principal) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req topUpRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Amount <= 0 {
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "amount", Message: "amount must be positive"}
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	if err := refuseEnded(sub); err != nil {
		return err
	}
	res, err := s.balances.TopUp(r.Context(), balance.TopUpRequest{Key: "topup:" + key, Subscription: sub.ID, Amount: req.Amount}, sub.CustomerID)
	if err != nil {
		return s.limitError(r.Context(), sub, req.Amount, s.changeError(r, err))
	}
	status := http.StatusCreated
	if res.Replayed {
		status = http.StatusOK
	}
	writeJSON(w, status, map[string]any{"seq": res.Seq, "grant_id": res.GrantID, "amount": req.Amount, "charge": res.Charge,
		"currency": res.Currency, "balance": res.Balance, "replayed": res.Replayed})
	return nil
}

// limitError says which of the plan's purchase limits a top-up broke.
func (s *Server) limitError(ctx context.Context, sub *rating.Subscription, amount credit.Amount, err error) error {
	var e *Error
	if !errors.As(err, &e) || (e.Code != "below_minimum" && e.Code != "above_maximum") {
		return err
	}
	plan, perr := s.cat.Plan(ctx, sub.PlanID)
	if perr != nil || plan.Prepaid == nil {
		return err
	}
	unit := plan.Prepaid.CreditCurrency
	switch {
	case e.Code == "below_minimum" && plan.Prepaid.MinPurchase != nil:
		e.Message = fmt.Sprintf("a top-up of %s %s is below the plan's minimum purchase of %s %s", amount, unit, plan.Prepaid.MinPurchase, unit)
	case e.Code == "above_maximum" && plan.Prepaid.MaxPurchase != nil:
		e.Message = fmt.Sprintf("a top-up of %s %s is above the plan's maximum purchase of %s %s", amount, unit, plan.Prepaid.MaxPurchase, unit)
	}
	return e
}

type adjustRequest struct {
	Amount credit.Amount `json:"amount"`
	Reason string        `json:"reason"`
	Actor  string        `json:"actor"` // kept as a note: the actor is the admin token's name
	Note   string        `json:"note"`
	Public bool          `json:"public"` // the reason may be shown to the customer
	Force  bool          `json:"force"`
}

// genericReason is what a customer sees of an adjustment not marked public.
const genericReason = "balance adjustment"

// maxNote bounds an adjustment's note.
const maxNote = 1000

// customerView hides from a customer who adjusted and why, unless the
// adjustment was marked public (then the reason, still not who).
func customerView(e *EntryJSON) {
	if e.Kind == "adjustment" && !e.Public {
		e.Reason = genericReason
	}
	e.Actor, e.Note, e.Public = "", "", false
}

func (s *Server) adjust(w http.ResponseWriter, r *http.Request, who principal) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req adjustRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.Amount == 0:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "amount", Message: "amount must be non-zero: positive adds credits, negative deducts"}
	case strings.TrimSpace(req.Reason) == "":
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "reason", Message: "an adjustment needs a reason"}
	case req.Actor != "" && req.Note != "":
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "actor", Message: "the actor is the admin token's name; give a note instead of actor"}
	}
	note := strings.TrimSpace(req.Note + req.Actor)
	if len(note) > maxNote {
		return &Error{Status: http.StatusBadRequest, Code: "too_long", Field: "note", Message: "a note is at most 1000 bytes"}
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	res, err := s.balances.Adjust(r.Context(), balance.AdjustRequest{Key: "adjust:" + key, Subscription: sub.ID, Amount: req.Amount,
		Reason: req.Reason, Actor: who.name, Note: note, Public: req.Public, Force: req.Force}, sub.CustomerID)
	if err != nil {
		return s.changeError(r, err)
	}
	status := http.StatusCreated
	if res.Replayed {
		status = http.StatusOK
	}
	writeJSON(w, status, map[string]any{"seq": res.Seq, "amount": req.Amount, "balance": res.Balance, "replayed": res.Replayed})
	return nil
}
