package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every request is counted and timed by route pattern (bounded: never the
// raw path), logged in one access line, and a write in one audit line too.
// Tokens are never logged: the principal is "admin", or "customer" with the
// customer id the token belongs to.

// readOnlyPOST are POST routes that change nothing: not audited.
var readOnlyPOST = map[string]bool{
	"POST /v1/subscriptions/preview":    true,
	"POST /v1/subscriptions/{id}/check": true,
}

// unmatched is the route label of a request no route took (404, 405).
const unmatched = "unmatched"

type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "creditmeter_http_requests_total",
			Help: "HTTP API requests by route pattern, method and status code."}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "creditmeter_http_request_duration_seconds",
			Help: "HTTP API request latency by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// reqInfo is what wrap learns about a request, for the middleware.
type reqInfo struct {
	route    *Route
	who      principal // also a customer refused an admin route
	resource string
}

type reqInfoKey struct{}

// noteRoute records the matched route and principal of r (called by wrap).
func noteRoute(r *http.Request, rt *Route, who principal) {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		info.route, info.who = rt, who
		for _, k := range []string{"token_id", "id", "code"} {
			if v := r.PathValue(k); v != "" {
				info.resource = v
				break
			}
		}
	}
}

// observe serves r through the mux, then counts, times and logs it.
func (s *Server) observe(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &reqInfo{}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	rec := &recorder{ResponseWriter: w, status: http.StatusOK, keep: r.Method == http.MethodPost}
	s.mux.ServeHTTP(rec, r)
	elapsed := time.Since(start)

	route, method := unmatched, boundedMethod(r.Method)
	if info.route != nil {
		route = info.route.Path
	}
	if s.metrics != nil {
		s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(rec.status)).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(elapsed.Seconds())
	}

	attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route), slog.Int("status", rec.status),
		slog.Duration("latency", elapsed), slog.Int64("bytes", rec.bytes)}
	attrs = append(attrs, principalAttrs(info)...)
	attrs = append(attrs, slog.String("remote", r.RemoteAddr))
	level := slog.LevelInfo
	if info.route != nil && info.route.Access == Public && r.Method == http.MethodGet {
		level = slog.LevelDebug // probes (/healthz, /readyz) every few seconds
	}
	s.log.LogAttrs(r.Context(), level, "http request", attrs...)

	if info.route == nil || (r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodDelete) || info.route.Access == Public ||
		readOnlyPOST[info.route.Method+" "+info.route.Path] {
		return
	}
	resource := info.resource
	if resource == "" && rec.status < 300 {
		resource = createdID(rec.body.Bytes())
	}
	audit := []slog.Attr{slog.String("route", info.route.Method+" "+info.route.Path), slog.String("resource", resource),
		slog.Int("status", rec.status)}
	audit = append(audit, principalAttrs(info)...)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "audit", audit...)
}

// principalAttrs names who called, never by the token.
func principalAttrs(info *reqInfo) []slog.Attr {
	switch {
	case info.who.admin:
		return []slog.Attr{slog.String("principal", "admin"), slog.String("admin", info.who.name)}
	case info.who.customer != "":
		return []slog.Attr{slog.String("principal", "customer"), slog.String("customer", info.who.customer)}
	default:
		return []slog.Attr{slog.String("principal", "none")}
	}
}

// createdID is the "id" (or a currency's "code") of a created resource's
// JSON answer; other fields (a new token) are never read.
func createdID(body []byte) string {
	var v struct {
		ID   string `json:"id"`
		Code string `json:"code"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	if v.ID != "" {
		return v.ID
	}
	return v.Code
}

func boundedMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// recorder remembers the status and size of a response and, when keep, the
// start of its body (for the audit line's resource id).
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	bytes       int64
	keep        bool
	body        bytes.Buffer
}

const keptBody = 4 << 10

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	if r.keep && r.body.Len() < keptBody {
		r.body.Write(b[:min(len(b), keptBody-r.body.Len())])
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
