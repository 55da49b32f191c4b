package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

// Webhook endpoints and their delivery logs (admin). Nil Options.Webhooks
// answers 503.

func (s *Server) webhooksOn() error {
	if s.hooks == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "webhooks are not configured"}
	}
	return nil
}

func webhookErr(err error) error {
	var fe *webhook.FieldError
	switch {
	case errors.As(err, &fe):
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Message: fe.Message, Field: fe.Field}
	case errors.Is(err, webhook.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no webhook endpoint with this id"}
	}
	return err
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.webhooksOn(); err != nil {
		return err
	}
	var body struct {
		URL         string   `json:"url"`
		Events      []string `json:"events"`
		Description string   `json:"description"`
	}
	if err := decode(w, r, &body); err != nil {
		return err
	}
	ep, err := s.hooks.Create(r.Context(), webhook.Endpoint{URL: body.URL, Events: body.Events, Description: body.Description})
	if err != nil {
		return webhookErr(err)
	}
	writeJSON(w, http.StatusCreated, ep)
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.webhooksOn(); err != nil {
		return err
	}
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, err := s.hooks.List(r.Context())
	if err != nil {
		return err
	}
	v, more := pageOf(v, func(e webhook.Endpoint) string { return e.ID }, after, limit)
	return page(w, v, more, func(e webhook.Endpoint) string { return e.ID }, nil)
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.webhooksOn(); err != nil {
		return err
	}
	v, err := s.hooks.Get(r.Context(), r.PathValue("id"))
	return ok(w, v, webhookErr(err))
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.webhooksOn(); err != nil {
		return err
	}
	if err := s.hooks.Delete(r.Context(), r.PathValue("id")); err != nil {
		return webhookErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listWebhookDeliveries(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.webhooksOn(); err != nil {
		return err
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Message: "limit must be an integer from 1 to 1000", Field: "limit"}
		}
		limit = n
	}
	v, err := s.hooks.Deliveries(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		return webhookErr(err)
	}
	return list(w, v, nil)
}

// subscriptionCreated emits subscription.created. Its id is the
// subscription's, so the replays of a create request emit one event (and
// heal a failed emission); a failure is logged, the subscription stands.
func (s *Server) subscriptionCreated(ctx context.Context, res *catalogstore.CreateResult) {
	if s.hooks == nil {
		return
	}
	sub := res.Subscription
	e := webhook.CreatedEvent(sub)
	if err := s.hooks.Emit(ctx, e); err != nil {
		s.log.Warn("api: emitting subscription.created failed", "subscription", sub.ID, "err", err)
	}
	// active at once: started now (a scheduled one: by serve's lifecycle sweep at its start)
	if !sub.StartAt.After(time.Now()) {
		if err := s.hooks.Emit(ctx, webhook.StartedEvent(sub)); err != nil {
			s.log.Warn("api: emitting subscription.started failed", "subscription", sub.ID, "err", err)
		}
	}
}
