// Package api is creditmeter's HTTP interface: the JSON API under /v1, health
// and readiness (/metrics is served by serve on its own listener). Every route is in one table (Routes), which
// api/openapi.yaml must describe; a test holds the two in step.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/tokens"
	"github.com/creditmeter/creditmeter/webhook"
)

//go:embed openapi.yaml
var openAPISpec []byte

// Ledger is the balance ledger as the API needs it. It is nil until the
// balance package is wired in; the catalog works without it.
type Ledger interface {
	// OpenSubscription opens (or updates) the subscription's account with
	// terms and records grant, its included credits, as the first grant (nil
	// when it has none). It must be idempotent per subscription: the API calls
	// it on every replay of a create request, so a failed call heals on retry,
	// and with grant nil for every subscription of a replaced plan.
	OpenSubscription(ctx context.Context, terms rating.AccountTerms, grant *rating.Grant) error
}

// Options configure NewServer.
type Options struct {
	// Ready reports whether the engine can do its work; nil means always ready.
	// Its error (addresses, internal errors) is shown to admin tokens only.
	Ready func(ctx context.Context) error
	// Catalog persists the catalog; nil makes /v1 answer 503.
	Catalog *catalogstore.Store
	// Tokens keeps customer tokens; nil: the store beside Catalog.
	Tokens *tokens.Store
	// Ledger receives new subscriptions; nil skips it.
	Ledger Ledger
	// Balances serves balances, checks, ledgers, top-ups and adjustments;
	// nil makes those routes answer 503.
	Balances Balances
	// Events produces POST /v1/events to the usage topic; nil answers 503.
	Events Events
	// Reports answers usage and invoice queries from the archive; nil answers 503.
	Reports Reports
	// AdminTokens are the bearer tokens with admin rights, each "secret" or
	// "name:secret" (tokens.ParseAdmin; unnamed ones are named "admin").
	AdminTokens []string
	// MaxFutureSkew: POST /v1/events refuses events stamped further ahead
	// of now (default ingest.DefaultMaxFutureSkew), as the engine would.
	MaxFutureSkew time.Duration
	// Logger logs internal errors, access and audit lines; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the HTTP request metrics (middleware.go); nil: none.
	Metrics prometheus.Registerer
	// Webhooks keeps webhook endpoints and their deliveries; nil makes
	// /v1/webhooks answer 503.
	Webhooks *webhook.Store
	// DeadLetters lists the dead-letter topic; nil answers 503.
	DeadLetters DeadLetters
	// PaymentSecret authenticates payment providers' callbacks
	// (POST /v1/payments/callback); empty: that route answers 404.
	PaymentSecret string
}

// Access says who may call a route.
type Access string

// Accesses.
const (
	Public   Access = "public"   // no token
	Customer Access = "customer" // an admin, or a customer token (the handler scopes it)
	Admin    Access = "admin"    // an admin token
)

// Route is one entry of the route table.
type Route struct {
	Method string
	Path   string // net/http pattern path, e.g. /v1/plans/{id}
	Access Access
	h      handler
}

type handler func(w http.ResponseWriter, r *http.Request, who principal) error

// Server routes HTTP requests.
type Server struct {
	mux      *http.ServeMux
	ready    func(ctx context.Context) error
	cat      *catalogstore.Store
	tokens   *tokens.Store
	ledger   Ledger
	balances Balances
	events   Events
	reports  Reports
	admins   []adminToken
	log      *slog.Logger
	routes   []Route
	skew     time.Duration // MaxFutureSkew
	metrics  *httpMetrics
	hooks    *webhook.Store
	// deadLetters serves GET /v1/dead-letters (deadletters.go).
	deadLetters DeadLetters
	// paymentSecret signs payment callbacks (topups.go).
	paymentSecret string
}

// NewServer builds the HTTP handler. Empty admin tokens are ignored.
func NewServer(o Options) *Server {
	s := &Server{mux: http.NewServeMux(), ready: o.Ready, cat: o.Catalog, ledger: o.Ledger, balances: o.Balances, events: o.Events, reports: o.Reports, log: o.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.tokens = o.Tokens
	if s.tokens == nil && s.cat != nil {
		s.tokens = tokens.ForCatalog(s.cat)
	}
	s.skew = o.MaxFutureSkew
	s.hooks = o.Webhooks
	s.deadLetters = o.DeadLetters
	s.paymentSecret = o.PaymentSecret
	if o.Metrics != nil {
		s.metrics = newHTTPMetrics(o.Metrics)
	}
	for _, t := range o.AdminTokens {
		if t != "" {
			name, secret := tokens.ParseAdmin(t)
			s.admins = append(s.admins, adminToken{name: name, secret: []byte(secret)})
		}
	}
	s.routes = s.table()
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Path, s.wrap(rt))
	}
	// The catch-all "/" would answer every other method with 404; a path the
	// table has with other methods is a 405 naming them instead.
	allowed := map[string][]string{}
	for _, rt := range s.routes {
		if allowed[rt.Path] == nil {
			allowed[rt.Path] = []string{}
		}
		allowed[rt.Path] = append(allowed[rt.Path], rt.Method)
		if rt.Method == http.MethodGet {
			allowed[rt.Path] = append(allowed[rt.Path], http.MethodHead)
		}
	}
	paths := http.NewServeMux()
	for path, methods := range allowed {
		sort.Strings(methods)
		allow := strings.Join(methods, ", ")
		paths.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			WriteError(w, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path + "; use " + allow})
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := paths.Handler(r); pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		WriteError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no route for " + r.Method + " " + r.URL.Path})
	})
	return s
}

// Routes is the route table (for documentation and tests).
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

func (s *Server) table() []Route {
	return []Route{
		{"GET", "/healthz", Public, func(w http.ResponseWriter, _ *http.Request, _ principal) error {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			return nil
		}},
		{"GET", "/readyz", Public, s.handleReady},
		{"GET", "/v1/openapi.yaml", Public, func(w http.ResponseWriter, _ *http.Request, _ principal) error {
			w.Header().Set("Content-Type", "application/yaml")
			_, err := w.Write(openAPISpec)
			return err
		}},

		{"POST", "/v1/currencies", Admin, s.createCurrency},
		{"GET", "/v1/currencies", Customer, s.listCurrencies},
		{"GET", "/v1/currencies/{code}", Customer, s.getCurrency},

		{"POST", "/v1/features", Admin, s.createFeature},
		{"GET", "/v1/features", Customer, s.listFeatures},
		{"GET", "/v1/features/{id}", Customer, s.getFeature},

		{"POST", "/v1/plans", Admin, s.createPlan},
		{"GET", "/v1/plans", Customer, s.listPlans},
		{"GET", "/v1/plans/{id}", Customer, s.getPlan},
		{"PUT", "/v1/plans/{id}", Admin, s.replacePlan},

		{"POST", "/v1/customers", Admin, s.createCustomer},
		{"GET", "/v1/customers", Admin, s.listCustomers},
		{"GET", "/v1/customers/{id}", Customer, s.getCustomer},
		{"PUT", "/v1/customers/{id}", Admin, s.replaceCustomer},
		{"POST", "/v1/customers/{id}/tokens", Admin, s.issueToken},
		{"GET", "/v1/customers/{id}/tokens", Customer, s.listTokens},
		{"DELETE", "/v1/customers/{id}/tokens/{token_id}", Customer, s.revokeToken},
		{"GET", "/v1/customers/{id}/subscriptions", Customer, s.customerSubscriptions},
		{"GET", "/v1/customers/{id}/usage", Customer, s.getCustomerUsage},

		{"POST", "/v1/subscriptions", Admin, s.createSubscription},
		{"POST", "/v1/subscriptions/preview", Admin, s.previewSubscription},
		{"GET", "/v1/subscriptions", Admin, s.listSubscriptions},
		{"GET", "/v1/subscriptions/{id}", Customer, s.getSubscription},
		{"PATCH", "/v1/subscriptions/{id}", Admin, s.patchSubscription},
		{"POST", "/v1/subscriptions/{id}/cancel", Admin, s.cancelSubscription},
		{"POST", "/v1/subscriptions/{id}/change-plan", Admin, s.changePlan},

		{"GET", "/v1/subscriptions/{id}/balance", Customer, s.getBalance},
		{"POST", "/v1/subscriptions/{id}/check", Customer, s.check},
		{"GET", "/v1/subscriptions/{id}/ledger", Customer, s.getLedger},
		{"POST", "/v1/subscriptions/{id}/topups", Customer, s.topUp},
		{"GET", "/v1/subscriptions/{id}/topups", Customer, s.listTopUps},
		{"GET", "/v1/subscriptions/{id}/topups/{topup_id}", Customer, s.getTopUp},
		{"POST", "/v1/subscriptions/{id}/topups/{topup_id}/confirm", Admin, s.confirmTopUp},
		{"POST", "/v1/payments/callback", Public, s.paymentCallback},
		{"GET", "/v1/subscriptions/{id}/auto-recharge", Customer, s.getAutoRecharge},
		{"PUT", "/v1/subscriptions/{id}/auto-recharge", Admin, s.putAutoRecharge},
		{"DELETE", "/v1/subscriptions/{id}/auto-recharge", Admin, s.deleteAutoRecharge},
		{"POST", "/v1/subscriptions/{id}/adjustments", Admin, s.adjust},

		{"GET", "/v1/subscriptions/{id}/usage", Customer, s.getUsage},
		{"GET", "/v1/subscriptions/{id}/meters/{feature_id}", Customer, s.getMeter},
		{"GET", "/v1/subscriptions/{id}/invoices", Customer, s.getInvoice},

		{"GET", "/v1/usage", Admin, s.getAllUsage},

		{"POST", "/v1/events", Admin, s.postEvents},

		{"POST", "/v1/webhooks", Admin, s.createWebhook},
		{"GET", "/v1/webhooks", Admin, s.listWebhooks},
		{"GET", "/v1/webhooks/{id}", Admin, s.getWebhook},
		{"DELETE", "/v1/webhooks/{id}", Admin, s.deleteWebhook},
		{"GET", "/v1/webhooks/{id}/deliveries", Admin, s.listWebhookDeliveries},
		{"GET", "/v1/dead-letters", Admin, s.listDeadLetters},
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.observe(w, r) }

func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := s.authenticate(r, rt.Access)
		noteRoute(r, &rt, who)
		if err == nil && rt.Access != Public && s.cat == nil {
			err = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the catalog store is not configured"}
		}
		if err == nil && (rt.Method == http.MethodPost || rt.Method == http.MethodPut) {
			err = jsonContentType(r)
		}
		if err == nil {
			err = rt.h(w, r, who)
		}
		if err != nil {
			s.writeErr(w, r, err)
		}
	})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			// The reasons name internal addresses and errors: admins only.
			msg := "not ready"
			if s.isAdmin(r) {
				msg = err.Error()
			}
			return &Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: msg}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// isAdmin reports whether r carries an admin bearer token (on a public route,
// where no token is required).
func (s *Server) isAdmin(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	_, ok = s.admin(tok)
	return ok
}

// Error is an API error, rendered as {"error": {"code", "message", "field"}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// WriteError writes err as the API's JSON error; errors that are not *Error
// become 500s.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
	if m := clipNumbers(e.Message); m != e.Message {
		c := *e
		c.Message = m
		e = &c
	}
	writeJSON(w, e.Status, map[string]*Error{"error": e})
}

// writeErr maps domain errors to API errors; internal ones are logged and
// answered without detail.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	var fe *rating.FieldError
	switch {
	case errors.As(err, &e):
	case errors.As(err, &fe):
		e = &Error{Status: http.StatusBadRequest, Code: fe.Code, Message: fe.Message, Field: fe.Field}
	case isStateError(err, &e):
	case errors.Is(err, catalogstore.ErrNotFound):
		e = &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, catalogstore.ErrConflict):
		e = &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	case errors.Is(err, catalogstore.ErrBusy):
		e = &Error{Status: http.StatusServiceUnavailable, Code: "busy", Message: err.Error()}
	case fault.Of(err) == fault.Unavailable:
		s.log.Warn("api: store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "a store is unavailable; retry (writes are idempotent)"}
	case fault.Of(err) == fault.Conflict:
		e = &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	case fault.Of(err) == fault.Invalid:
		e = &Error{Status: http.StatusBadRequest, Code: "invalid", Message: err.Error()}
	default:
		s.log.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	WriteError(w, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
