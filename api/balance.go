package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
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
	var pl *balance.PurchaseLimitError
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
	case errors.As(err, &pl):
		unit := "credits"
		if pl.Kind == "charge" {
			unit = pl.Currency
		}
		return &Error{Status: http.StatusUnprocessableEntity, Code: "purchase_limit_exceeded", Field: "amount",
			Message: fmt.Sprintf("this top-up would exceed the plan's purchase limit of %s %s per month: %s %s already bought or pending in %s (UTC)",
				pl.Limit, unit, pl.Used, unit, pl.Period)}
	case errors.Is(err, balance.ErrOutOfRange):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "out_of_range", Field: "amount",
			Message: "this change would take the balance beyond ±9,000,000,000 credits, the most a balance holds"}
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
	// DebtLimit is the limit on overage debt, when there is one.
	DebtLimit *credit.Amount `json:"debt_limit,omitempty"`
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
		Unfunded: v.Unfunded, Low: v.Low, Policy: string(v.Policy), Grants: []GrantJSON{}, GrantsTotal: len(v.Grants), DebtLimit: v.DebtLimit}
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

// checkRequest is what to check: a raw amount of credits, or a feature and
// quantity, or an event, which are rated as the engine would rate them.
type checkRequest struct {
	Amount     *credit.Amount             `json:"amount"`
	Feature    string                     `json:"feature"`
	EventName  string                     `json:"event_name"`
	Quantity   json.RawMessage            `json:"quantity"`
	Dimensions map[string]json.RawMessage `json:"dimensions"`
}

func (s *Server) check(w http.ResponseWriter, r *http.Request, who principal) error {
	var req checkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{req.Amount != nil, req.Feature != "", req.EventName != ""} {
		if set {
			modes++
		}
	}
	switch {
	case modes == 0:
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "amount",
			Message: "amount, feature or event_name is required: the credits to spend, e.g. {\"amount\": \"5\"}, or {\"feature\": \"ai-agent-email\", \"quantity\": \"3\"}"}
	case modes > 1:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "amount", Message: "give one of amount, feature or event_name"}
	case req.Amount != nil && *req.Amount < 0:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "amount", Message: "amount must not be negative"}
	case req.Amount != nil && (req.Quantity != nil || req.Dimensions != nil):
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "quantity", Message: "quantity and dimensions go with feature or event_name, not amount"}
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	out := map[string]any{}
	amount := credit.Amount(0)
	if req.Amount != nil {
		amount = *req.Amount
	} else {
		q, dims, err := checkQuantity(req)
		if err != nil {
			return err
		}
		tbl, err := s.cat.SubscriptionTable(r.Context(), sub)
		if err != nil {
			return err
		}
		var money rating.Money
		if req.Feature != "" {
			amount, money, err = tbl.Quote(sub.ID, req.Feature, q, dims)
		} else {
			amount, money, err = rateEvents(tbl, sub, req.EventName, q, dims, time.Now())
		}
		if err != nil {
			return quoteError(err, req.Feature != "")
		}
		out["cost"] = map[string]any{"amount": money.String(), "currency": sub.Currency}
	}
	v, err := s.balances.Check(r.Context(), sub.ID, amount)
	if err != nil {
		return balanceError(err)
	}
	out["allowed"], out["available"], out["policy"] = v.Allowed, v.Available, string(v.Policy)
	out["credits"], out["spendable"] = amount, v.Spendable
	if v.DebtLimit != nil {
		out["debt_limit"] = *v.DebtLimit
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// checkQuantity reads a check's quantity (default 1) and dimensions.
func checkQuantity(req checkRequest) (rating.Number, []rating.Dim, error) {
	q := rating.NumberOf(1)
	if req.Quantity != nil {
		var err error
		if q, err = rating.ParseNumberBytes(bytes.Trim(req.Quantity, `"`)); err != nil || q.Mant < 0 {
			return q, nil, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "quantity", Message: "quantity must be a non-negative decimal number, e.g. \"3\""}
		}
	}
	if req.Dimensions == nil {
		return q, nil, nil
	}
	keys := make([]string, 0, len(req.Dimensions))
	for k := range req.Dimensions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dims := make([]rating.Dim, 0, len(keys))
	for _, k := range keys {
		raw := req.Dimensions[k]
		var str string
		if err := json.Unmarshal(raw, &str); err == nil {
			dims = append(dims, rating.Dim{Key: k, Str: str})
			continue
		}
		n, err := rating.ParseNumberBytes(raw)
		if err != nil {
			return q, nil, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "dimensions." + k, Message: "a dimension is a string or a number"}
		}
		dims = append(dims, rating.Dim{Key: k, Num: n, IsNum: true})
	}
	return q, dims, nil
}

// rateEvents rates quantity (a whole number) events named name with dims,
// one by one as the engine does, summing every meter's line.
func rateEvents(tbl *rating.Table, sub *rating.Subscription, name string, q rating.Number, dims []rating.Dim, now time.Time) (credit.Amount, rating.Money, error) {
	n, err := strconv.ParseInt(q.String(), 10, 64)
	if err != nil || n > 1e6 {
		return 0, 0, rating.ErrNotWhole
	}
	at := now
	if at.Before(sub.StartAt) {
		at = sub.StartAt
	}
	ev := rating.Event{ID: "check", CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Name: name, Timestamp: at, Dims: dims}
	lines, err := tbl.Rate(&ev, nil)
	if err != nil {
		return 0, 0, err
	}
	var one credit.Amount
	var money rating.Money
	for _, l := range lines {
		one, money = one+l.Credits, money+l.Money
	}
	total, cost := one*credit.Amount(n), money*rating.Money(n)
	if n > 0 && (total/credit.Amount(n) != one || !total.Valid() || cost/rating.Money(n) != money) {
		return 0, 0, rating.ErrOverflow
	}
	return total, cost, nil
}

// quoteError maps rating's refusals of a check to API errors.
func quoteError(err error, feature bool) error {
	field := "event_name"
	if feature {
		field = "feature"
	}
	switch {
	case errors.Is(err, rating.ErrFeatureNotRated):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "not_rated", Field: "feature", Message: "the subscription's conversion table has no rate for this feature"}
	case errors.Is(err, rating.ErrFilterMismatch):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "filter_mismatch", Field: "dimensions", Message: "the dimensions do not match the feature's meter filters, so such usage is not charged to it"}
	case errors.Is(err, rating.ErrNotWhole):
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "quantity", Message: "a COUNT meter (or a number of events) takes a whole quantity, at most 1,000,000 events"}
	case errors.Is(err, rating.ErrOverflow):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "out_of_range", Field: "quantity", Message: "the quantity's credits are beyond range"}
	case errors.Is(err, rating.ErrMissingDimension), errors.Is(err, rating.ErrDimensionNotNumber), errors.Is(err, rating.ErrNegativeQuantity):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "unratable", Field: "dimensions", Message: strings.TrimPrefix(err.Error(), "rating: ")}
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: "unratable", Field: field, Message: strings.TrimPrefix(err.Error(), "rating: ")}
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
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		seq, ok := strings.CutPrefix(string(b), "seq:")
		n, perr := strconv.ParseInt(seq, 10, 64)
		if err != nil || !ok || perr != nil || n < 1 || r.URL.Query().Has("from_seq") {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "cursor", Message: "cursor is not a next_cursor of this ledger (and goes without from_seq)"}
		}
		from = n
	}
	sub, err := s.subscriptionFor(r, who)
	if err != nil {
		return err
	}
	// One entry more than the page says whether another page follows.
	es, err := s.balances.Ledger(r.Context(), sub.ID, from, limit+1)
	if err != nil {
		return balanceError(err)
	}
	next := ""
	if len(es) > limit {
		next = base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatInt(int64(es[limit].Seq), 10)))
		es = es[:limit]
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
	body := map[string]any{"entries": out}
	if next != "" {
		body["next_cursor"] = next
	}
	writeJSON(w, http.StatusOK, body)
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
	if terms := s.paymentTerms(r.Context(), sub); terms != nil {
		return s.pendingTopUp(w, r, sub, key, req.Amount, terms)
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
