package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/creditmeter/creditmeter/internal/redisx"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// created answers 201 for a new entry, 200 for an idempotent replay.
func created(w http.ResponseWriter, isNew bool, v any) error {
	status := http.StatusOK
	if isNew {
		status = http.StatusCreated
	}
	writeJSON(w, status, v)
	return nil
}

func ok(w http.ResponseWriter, v any, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// list wraps a collection as {"data": [...]}, so it can gain paging fields.
func list[T any](w http.ResponseWriter, v []T, err error) error {
	if err != nil {
		return err
	}
	if v == nil {
		v = []T{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": v})
	return nil
}

// List pages: limit entries (1 to maxListLimit, default defaultListLimit)
// after the opaque cursor, the next_cursor of the previous page.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// listPage reads ?limit&cursor; after is the id the page starts after.
func listPage(r *http.Request) (after string, limit int, err error) {
	qv := r.URL.Query()
	limit = defaultListLimit
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return "", 0, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "limit", Message: fmt.Sprintf("limit must be 1 to %d", maxListLimit)}
		}
		limit = n
	}
	if c := qv.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		id, ok := strings.CutPrefix(string(b), "id:")
		if err != nil || !ok || id == "" {
			return "", 0, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "cursor", Message: "cursor is not a next_cursor of this list"}
		}
		after = id
	}
	return after, limit, nil
}

// page answers a page of a list as {"data": [...], "next_cursor"}; the
// cursor holds the last id.
func page[T any](w http.ResponseWriter, v []T, more bool, id func(T) string, err error) error {
	if err != nil {
		return err
	}
	if v == nil {
		v = []T{}
	}
	body := map[string]any{"data": v}
	if more && len(v) > 0 {
		body["next_cursor"] = base64.RawURLEncoding.EncodeToString([]byte("id:" + id(v[len(v)-1])))
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// pageOf is the page of v (any order) after the id after, sorted by id:
// for the short lists (a customer's tokens, the webhook endpoints) read
// whole.
func pageOf[T any](v []T, id func(T) string, after string, limit int) ([]T, bool) {
	sort.Slice(v, func(i, j int) bool { return id(v[i]) < id(v[j]) })
	i := sort.Search(len(v), func(i int) bool { return id(v[i]) > after })
	v = v[i:]
	if len(v) > limit {
		return v[:limit], true
	}
	return v, false
}

// pathID puts the path's id into the body's id field: the body may omit it,
// but may not contradict it.
func pathID(r *http.Request, name string, body *string) error {
	id := r.PathValue(name)
	if *body != "" && *body != id {
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: name, Message: "the body's " + name + " " + *body + " differs from the path's " + id}
	}
	*body = id
	return nil
}

func (s *Server) createCurrency(w http.ResponseWriter, r *http.Request, _ principal) error {
	var c rating.CreditCurrency
	if err := decode(w, r, &c); err != nil {
		return err
	}
	isNew, err := s.cat.CreateCurrency(r.Context(), &c)
	if err != nil {
		return err
	}
	return created(w, isNew, &c)
}

func (s *Server) listCurrencies(w http.ResponseWriter, r *http.Request, _ principal) error {
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, more, err := s.cat.CurrenciesPage(r.Context(), after, limit)
	return page(w, v, more, func(c *rating.CreditCurrency) string { return c.Code }, err)
}

func (s *Server) getCurrency(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.cat.Currency(r.Context(), r.PathValue("code"))
	return ok(w, v, err)
}

func (s *Server) createFeature(w http.ResponseWriter, r *http.Request, _ principal) error {
	var f rating.Feature
	if err := decode(w, r, &f); err != nil {
		return err
	}
	isNew, err := s.cat.CreateFeature(r.Context(), &f)
	if err != nil {
		return err
	}
	return created(w, isNew, &f)
}

func (s *Server) listFeatures(w http.ResponseWriter, r *http.Request, _ principal) error {
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, more, err := s.cat.FeaturesPage(r.Context(), after, limit)
	return page(w, v, more, func(f *rating.Feature) string { return f.ID }, err)
}

func (s *Server) getFeature(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.cat.Feature(r.Context(), r.PathValue("id"))
	return ok(w, v, err)
}

func (s *Server) createPlan(w http.ResponseWriter, r *http.Request, _ principal) error {
	var p rating.Plan
	if err := decode(w, r, &p); err != nil {
		return err
	}
	isNew, err := s.cat.CreatePlan(r.Context(), &p)
	if err != nil {
		return err
	}
	return created(w, isNew, &p)
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request, _ principal) error {
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, more, err := s.cat.PlansPage(r.Context(), after, limit)
	return page(w, v, more, func(p *rating.Plan) string { return p.ID }, err)
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.cat.Plan(r.Context(), r.PathValue("id"))
	return ok(w, v, err)
}

// replacePlan replaces a plan; its subscriptions rate with it from the next
// catalog refresh, and their ledger accounts get the new terms.
func (s *Server) replacePlan(w http.ResponseWriter, r *http.Request, _ principal) error {
	var p rating.Plan
	if err := decode(w, r, &p); err != nil {
		return err
	}
	if err := pathID(r, "id", &p.ID); err != nil {
		return err
	}
	if err := s.cat.ReplacePlan(r.Context(), &p); err != nil {
		return err
	}
	if s.ledger != nil {
		subs, err := s.cat.PlanSubscriptions(r.Context(), p.ID)
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if err := s.ledger.OpenSubscription(r.Context(), rating.Terms(sub, &p), nil); err != nil {
				s.log.Warn("api: a replaced plan's balance account failed", "plan", p.ID, "subscription", sub.ID, "err", err)
				return ledgerError("the plan is stored but the balance account of subscription "+sub.ID+" is not updated", err)
			}
		}
	}
	writeJSON(w, http.StatusOK, &p)
	return nil
}

func (s *Server) createCustomer(w http.ResponseWriter, r *http.Request, _ principal) error {
	var c rating.Customer
	if err := decode(w, r, &c); err != nil {
		return err
	}
	isNew, err := s.cat.CreateCustomer(r.Context(), &c)
	if err != nil {
		return err
	}
	return created(w, isNew, &c)
}

func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request, _ principal) error {
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, more, err := s.cat.CustomersPage(r.Context(), after, limit)
	return page(w, v, more, func(c *rating.Customer) string { return c.ID }, err)
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request, who principal) error {
	v, err := s.ownedCustomer(r, who)
	return ok(w, v, err)
}

// ownedCustomer reads the path's customer, if who may see it.
func (s *Server) ownedCustomer(r *http.Request, who principal) (*rating.Customer, error) {
	id := r.PathValue("id")
	if !who.may(id) {
		return nil, forbidden()
	}
	return s.cat.Customer(r.Context(), id)
}

func (s *Server) replaceCustomer(w http.ResponseWriter, r *http.Request, _ principal) error {
	var c rating.Customer
	if err := decode(w, r, &c); err != nil {
		return err
	}
	if err := pathID(r, "id", &c.ID); err != nil {
		return err
	}
	if err := s.cat.ReplaceCustomer(r.Context(), &c); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, &c)
	return nil
}

func (s *Server) customerSubscriptions(w http.ResponseWriter, r *http.Request, who principal) error {
	if _, err := s.ownedCustomer(r, who); err != nil {
		return err
	}
	id := r.PathValue("id")
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, more, err := s.cat.CustomerSubscriptionsPage(r.Context(), id, after, limit)
	return page(w, v, more, subID, err)
}

func subID(s *rating.Subscription) string { return s.ID }

func decodeSubscription(w http.ResponseWriter, r *http.Request) (*rating.Subscription, error) {
	var sub rating.Subscription
	if err := decode(w, r, &sub); err != nil {
		return nil, err
	}
	if !sub.StartAt.IsZero() {
		return nil, &Error{Status: http.StatusBadRequest, Code: "read_only", Field: "start_at", Message: "start_at is set by the server; use schedule"}
	}
	if !sub.CreatedAt.IsZero() {
		return nil, &Error{Status: http.StatusBadRequest, Code: "read_only", Field: "created_at", Message: "created_at is set by the server"}
	}
	return &sub, nil
}

func (s *Server) previewSubscription(w http.ResponseWriter, r *http.Request, _ principal) error {
	sub, err := decodeSubscription(w, r)
	if err != nil {
		return err
	}
	pv, err := s.cat.PreviewSubscription(r.Context(), sub)
	return ok(w, pv, err)
}

// createSubscription creates a subscription, idempotent by the Idempotency-Key
// header or the body's id, then hands its terms and included credits to the
// ledger (again on every replay, which heals a failed hand-over).
func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, _ principal) error {
	sub, err := decodeSubscription(w, r)
	if err != nil {
		return err
	}
	res, err := s.cat.CreateSubscription(r.Context(), sub, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	if err := s.openAccount(r.Context(), res.Subscription, res.Plan,
		"api: a stored subscription's balance account or archive entry failed",
		"the subscription is stored but its balance account is not"); err != nil {
		return err
	}
	s.subscriptionCreated(r.Context(), res)
	return created(w, res.Created, res.Subscription)
}

// openAccount hands a new subscription's terms and included credits to the
// ledger (if any); on failure it logs logMsg and answers with msg.
func (s *Server) openAccount(ctx context.Context, sub *rating.Subscription, plan *rating.Plan, logMsg, msg string) error {
	if s.ledger == nil {
		return nil
	}
	var grant *rating.Grant
	if g, has := rating.InitialGrant(sub, plan); has {
		grant = &g
	}
	if err := s.ledger.OpenSubscription(ctx, rating.Terms(sub, plan), grant); err != nil {
		s.log.Warn(logMsg, "subscription", sub.ID, "err", err)
		return ledgerError(msg, err)
	}
	return nil
}

// ledgerError says what of a subscription was stored and what was not.
func ledgerError(what string, err error) error {
	var na notArchived
	if errors.As(err, &na) {
		seq, bal := na.NotArchived()
		return &Error{Status: http.StatusServiceUnavailable, Code: "archive_unavailable",
			Message: fmt.Sprintf("the subscription and its included credits are stored (balance %s, seq %d) but their archive entry is not; repeat the same request (same Idempotency-Key)", bal, seq)}
	}
	msg := what
	if redisx.Unavailable(err) {
		msg += " (Redis is unavailable)"
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: "ledger_unavailable", Message: msg + "; repeat the same request (same Idempotency-Key)"}
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, _ principal) error {
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, more, err := s.cat.SubscriptionsPage(r.Context(), after, limit)
	return page(w, v, more, subID, err)
}

// getSubscription answers 404 for another customer's subscription, so a
// customer token cannot probe which ids exist.
func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, who principal) error {
	v, err := s.ownedSubscription(r, who)
	return ok(w, v, err)
}

// ownedSubscription is the path's subscription if who may see it; another
// customer's is a 404, like a missing one.
func (s *Server) ownedSubscription(r *http.Request, who principal) (*rating.Subscription, error) {
	v, err := s.cat.Subscription(r.Context(), r.PathValue("id"))
	if err == nil && !who.may(v.CustomerID) {
		err = catalogstore.ErrNotFound
	}
	if errors.Is(err, catalogstore.ErrNotFound) {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no subscription " + r.PathValue("id")}
	}
	return v, err
}
