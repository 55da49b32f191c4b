package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// Every request gets an access line (route pattern, status, principal) and
// is counted by route; every write also gets an audit line; no token is
// ever logged.
func TestAccessAuditLogsAndMetrics(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	store, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	srv := api.NewServer(api.Options{Catalog: store, Ledger: &fakeLedger{}, AdminTokens: []string{admin},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Metrics: reg})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}

	e.seed()
	sub := e.must(201, "POST", "/v1/subscriptions", admin, seedSub).body["id"].(string)
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	e.must(200, "GET", "/v1/subscriptions/"+sub, tok, "")
	e.do("POST", "/v1/subscriptions/"+sub+"/check", tok, `{"amount":"1"}`) // read-only (503 here: no balances)
	e.must(403, "POST", "/v1/subscriptions", tok, seedSub)
	e.must(401, "PUT", "/v1/customers/acme", "not-a-token", globexJSON)
	e.must(404, "GET", "/v1/nope", admin, "")
	e.must(404, "GET", "/v1/nope/"+sub, admin, "")
	e.must(405, "DELETE", "/v1/plans", admin, "")
	e.must(200, "GET", "/healthz", "", "")

	lines := logs.lines(t)
	var access, audit []map[string]any
	for _, l := range lines {
		raw, _ := json.Marshal(l)
		for _, secret := range []string{admin, tok, "not-a-token"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("a log line holds a token: %s", raw)
			}
		}
		switch l["msg"] {
		case "http request":
			access = append(access, l)
		case "audit":
			audit = append(audit, l)
		}
	}
	if len(access) != 16 {
		t.Errorf("%d access lines for 16 requests", len(access))
	}
	find := func(ls []map[string]any, want map[string]any) bool {
	next:
		for _, l := range ls {
			for k, v := range want {
				if l[k] != v {
					continue next
				}
			}
			return true
		}
		return false
	}
	for _, want := range []map[string]any{
		{"method": "GET", "route": "/v1/subscriptions/{id}", "status": 200.0, "principal": "customer", "customer": "acme"},
		{"method": "POST", "route": "/v1/plans", "status": 201.0, "principal": "admin"},
		{"method": "PUT", "route": "/v1/customers/{id}", "status": 401.0, "principal": "none"},
		{"method": "GET", "route": "unmatched", "status": 404.0},
		{"method": "DELETE", "route": "unmatched", "status": 405.0},
		{"method": "GET", "route": "/healthz", "status": 200.0, "level": "DEBUG"},
	} {
		if !find(access, want) {
			t.Errorf("no access line %v", want)
		}
	}
	for _, l := range access {
		if _, ok := l["latency"]; !ok {
			t.Errorf("access line without latency: %v", l)
		}
	}
	// Writes only (not the read-only check): 6 seed, subscription, token, refused subscription, refused PUT.
	if len(audit) != 10 {
		t.Errorf("%d audit lines, want 10: %v", len(audit), audit)
	}
	for _, want := range []map[string]any{
		{"route": "POST /v1/currencies", "resource": "AIT", "status": 201.0, "principal": "admin"},
		{"route": "POST /v1/customers", "resource": "globex", "status": 201.0, "principal": "admin"},
		{"route": "POST /v1/subscriptions", "resource": sub, "status": 201.0, "principal": "admin"},
		{"route": "POST /v1/customers/{id}/tokens", "resource": "acme", "status": 201.0, "principal": "admin"},
		{"route": "POST /v1/subscriptions", "status": 403.0, "principal": "customer", "customer": "acme"},
		{"route": "PUT /v1/customers/{id}", "resource": "acme", "status": 401.0, "principal": "none"},
	} {
		if !find(audit, want) {
			t.Errorf("no audit line %v in %v", want, audit)
		}
	}
	if find(audit, map[string]any{"route": "POST /v1/subscriptions/{id}/check"}) {
		t.Error("the read-only check was audited")
	}

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			if c := m.GetCounter(); c != nil {
				got[key] = c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				got[key] = float64(h.GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		`creditmeter_http_requests_total{code=200,method=GET,route=/v1/subscriptions/{id}}`: 1,
		`creditmeter_http_requests_total{code=201,method=POST,route=/v1/features}`:          2,
		`creditmeter_http_requests_total{code=404,method=GET,route=unmatched}`:              2,
		`creditmeter_http_requests_total{code=405,method=DELETE,route=unmatched}`:           1,
		`creditmeter_http_requests_total{code=403,method=POST,route=/v1/subscriptions}`:     1,
		`creditmeter_http_request_duration_seconds{route=/v1/subscriptions}`:                2,
		`creditmeter_http_request_duration_seconds{route=/v1/subscriptions/{id}/check}`:     1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	for key := range got {
		if strings.Contains(key, sub) || strings.Contains(key, "nope") {
			t.Errorf("a raw path is a label value: %s", key)
		}
	}
}
