package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

const admin = "admin-token-0123456789"

// fakeLedger records what the API hands the balance ledger.
type fakeLedger struct {
	mu     sync.Mutex
	terms  []rating.AccountTerms
	grants []*rating.Grant
}

func (l *fakeLedger) OpenSubscription(_ context.Context, t rating.AccountTerms, g *rating.Grant) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.terms = append(l.terms, t)
	l.grants = append(l.grants, g)
	return nil
}

type env struct {
	t      *testing.T
	url    string
	ledger *fakeLedger
	srv    *api.Server
	cat    *catalogstore.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rc, prefix := testenv.Keyspace(t)
	store, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeLedger{}
	srv := api.NewServer(api.Options{Catalog: store, Ledger: l, AdminTokens: []string{admin}})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	return &env{t: t, url: hs.URL, ledger: l, srv: srv, cat: store}
}

type resp struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (r resp) err() (code, field, msg string) {
	e, _ := r.body["error"].(map[string]any)
	code, _ = e["code"].(string)
	field, _ = e["field"].(string)
	msg, _ = e["message"].(string)
	return
}

func (e *env) do(method, path, token, body string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, raw: string(b), header: res.Header}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func (e *env) must(status int, method, path, token, body string, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, token, body, hdr...)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.raw)
	}
	return r
}

const (
	aitJSON   = `{"code":"AIT","name":"AI Tokens","symbol":"AIT"}`
	emailJSON = `{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`
	storeJSON = `{"id":"storage","name":"Storage","meter":{"kind":"pre_aggregated"}}`
	planJSON  = `{"id":"ai-prepaid","product":"ai-agents","name":"AI Agents Prepaid","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},
	    "currency_values":[{"currency":"USD","value":"1.00"},{"currency":"EUR","value":"0.95"}],
	    "min_purchase":"250","max_purchase":"8000",
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],
	    "low_balance":{"credits":"50","percent":"10"},"overage_policy":"unfunded"}}`
	acmeJSON   = `{"id":"acme","name":"Acme Inc","billing_provider":"Customers EMEA","address":{"line1":"123 Main St","city":"NY","country":"US"},"payment_method":"card **** 4242 exp 12/2034"}`
	globexJSON = `{"id":"globex","name":"Globex"}`
	seedSub    = `{"customer_id":"acme","product":"ai-agents","plan_id":"ai-prepaid","currency":"USD","credit_value":"0.04",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"100","expiration":{"rule":"never"}},
	  "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],
	  "schedule":{"start":"now"},
	  "billing":{"provider":"Customers EMEA","address":{"line1":"123 Main St","city":"NY","country":"US"},"payment_method":"card **** 4242 exp 12/2034"}}`
)

func (e *env) seed() {
	e.must(201, "POST", "/v1/currencies", admin, aitJSON)
	e.must(201, "POST", "/v1/features", admin, emailJSON)
	e.must(201, "POST", "/v1/features", admin, storeJSON)
	e.must(201, "POST", "/v1/plans", admin, planJSON)
	e.must(201, "POST", "/v1/customers", admin, acmeJSON)
	e.must(201, "POST", "/v1/customers", admin, globexJSON)
}

func TestSeedFlow(t *testing.T) {
	e := newEnv(t)
	e.seed()
	// Creating the same entry again is a no-op; different content conflicts.
	e.must(200, "POST", "/v1/currencies", admin, aitJSON)
	e.must(409, "POST", "/v1/currencies", admin, `{"code":"AIT","name":"Other"}`)

	p := e.must(200, "GET", "/v1/plans/ai-prepaid", admin, "")
	pp := p.body["prepaid"].(map[string]any)
	if pp["min_purchase"] != "250" || pp["max_purchase"] != "8000" || pp["currency_values"].([]any)[0].(map[string]any)["value"] != "1" {
		t.Errorf("plan read back: %s", p.raw)
	}

	pv := e.must(200, "POST", "/v1/subscriptions/preview", admin, seedSub)
	if pv.body["credit_value"] != "0.04" || pv.body["credit_value_source"] != "subscription" || pv.body["credit_currency"] != "AIT" {
		t.Errorf("preview credit value: %s", pv.raw)
	}
	inc := pv.body["included_credits"].(map[string]any)
	if inc["amount"] != "100" || inc["grant_type"] != "promotional" || inc["expires_at"] != nil {
		t.Errorf("preview included: %v", inc)
	}
	if ch := pv.body["charge_now"].(map[string]any); ch["amount"] != "0" || ch["currency"] != "USD" {
		t.Errorf("promotional credits charged: %v", ch)
	}
	rows := pv.body["consumption"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["credits_per_unit"] != "1" || rows[0].(map[string]any)["source"] != "subscription" {
		t.Errorf("preview consumption: %v", rows)
	}
	purchased := strings.Replace(seedSub, `"promotional"`, `"purchased"`, 1)
	pv = e.must(200, "POST", "/v1/subscriptions/preview", admin, purchased)
	if ch := pv.body["charge_now"].(map[string]any); ch["amount"] != "4" || ch["currency"] != "USD" {
		t.Errorf("100 AIT × 0.04 USD charged %v, want 4", ch)
	}
	// The preview wrote nothing.
	if l := e.must(200, "GET", "/v1/subscriptions", admin, ""); len(l.body["data"].([]any)) != 0 {
		t.Fatalf("preview created a subscription: %s", l.raw)
	}

	c := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "k-1")
	id, _ := c.body["id"].(string)
	if id == "" || c.body["start_at"] == "" || c.body["product"] != "ai-agents" {
		t.Fatalf("created: %s", c.raw)
	}
	again := e.must(200, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "k-1")
	if again.body["id"] != id || again.body["start_at"] != c.body["start_at"] {
		t.Errorf("replay returned %s, want %s", again.raw, c.raw)
	}
	e.must(409, "POST", "/v1/subscriptions", admin, purchased, "Idempotency-Key", "k-1")
	e.must(200, "GET", "/v1/subscriptions/"+id, admin, "")

	if len(e.ledger.grants) != 2 {
		t.Fatalf("ledger got %d hand-overs, want 2 (create and replay)", len(e.ledger.grants))
	}
	g, tm := e.ledger.grants[0], e.ledger.terms[0]
	if g == nil || g.SubscriptionID != id || g.Type != rating.GrantPromotional || g.Amount.String() != "100" || g.ExpiresAt != nil || !g.Charge.Amount.IsZero() {
		t.Errorf("initial grant %+v", g)
	}
	if tm.SubscriptionID != id || tm.Overage != rating.OverageUnfunded || tm.CreditValue.String() != "0.04" || tm.MinPurchase.String() != "250" || tm.MaxPurchase.String() != "8000" || tm.LowCredits.String() != "50" {
		t.Errorf("terms %+v", tm)
	}
	if *e.ledger.grants[1] != *g {
		t.Errorf("replay handed a different grant: %+v", e.ledger.grants[1])
	}

	// Replacing the plan hands the new terms to the ledger.
	newPlan := strings.Replace(planJSON, `"overage_policy":"unfunded"`, `"overage_policy":"overage"`, 1)
	e.must(200, "PUT", "/v1/plans/ai-prepaid", admin, newPlan)
	if last := e.ledger.terms[len(e.ledger.terms)-1]; last.SubscriptionID != id || last.Overage != rating.OverageAllow || e.ledger.grants[len(e.ledger.grants)-1] != nil {
		t.Errorf("terms after plan change %+v", last)
	}
}

func TestInvalidInputNamesTheField(t *testing.T) {
	e := newEnv(t)
	e.seed()
	plan := func(from, to string) string {
		if !strings.Contains(planJSON, from) {
			t.Fatalf("plan has no %q", from)
		}
		return strings.Replace(strings.Replace(planJSON, `"ai-prepaid"`, `"p2"`, 1), from, to, 1)
	}
	sub := func(from, to string) string {
		if !strings.Contains(seedSub, from) {
			t.Fatalf("subscription has no %q", from)
		}
		return strings.Replace(seedSub, from, to, 1)
	}
	cases := []struct {
		name, path, body   string
		status             int
		code, field, msgIn string
	}{
		{"pre-aggregated meter", "/v1/plans", plan(`"feature_id":"ai-agent-email"`, `"feature_id":"storage"`), 400, "meter_not_event_based", "prepaid.consumption[0].feature_id", "Only event-based meters are currently supported for credit consumption mapping"},
		{"min > max", "/v1/plans", plan(`"min_purchase":"250"`, `"min_purchase":"9000"`), 400, "invalid", "prepaid.min_purchase", "must not exceed"},
		{"free plan prepaid", "/v1/plans", plan(`"type":"paid"`, `"type":"free"`), 400, "invalid", "billing_model", "only a paid plan"},
		{"unknown feature", "/v1/plans", plan(`"feature_id":"ai-agent-email"`, `"feature_id":"nope"`), 400, "unknown_reference", "prepaid.consumption[0].feature_id", "nope"},
		{"negative rate", "/v1/plans", plan(`"credits_per_unit":"1"`, `"credits_per_unit":"-1"`), 400, "invalid", "prepaid.consumption[0].credits_per_unit", "positive"},
		{"zero rate", "/v1/plans", plan(`"credits_per_unit":"1"`, `"credits_per_unit":0`), 400, "invalid", "prepaid.consumption[0].credits_per_unit", "positive"},
		{"bad currency", "/v1/plans", plan(`"currency":"EUR"`, `"currency":"euro"`), 400, "invalid", "prepaid.currency_values[1].currency", "ISO 4217"},
		{"bad amount", "/v1/plans", plan(`"max_purchase":"8000"`, `"max_purchase":"lots"`), 400, "invalid_value", "prepaid.max_purchase", "decimal"},
		{"too precise amount", "/v1/plans", plan(`"max_purchase":"8000"`, `"max_purchase":"1.0000001"`), 400, "invalid_value", "prepaid.max_purchase", "6 decimal"},
		{"unknown field", "/v1/plans", plan(`"name":"AI Agents Prepaid"`, `"name":"x","colour":"red"`), 400, "unknown_field", "colour", "colour"},
		{"wrong type", "/v1/plans", plan(`"name":"AI Agents Prepaid"`, `"name":7`), 400, "invalid_type", "name", "string"},
		{"body not an object", "/v1/plans", `[{"id":"p"}]`, 400, "invalid_type", "", "the request body must be a JSON object"},
		{"malformed", "/v1/plans", `{"id":`, 400, "malformed_json", "", ""},
		{"syntax", "/v1/plans", `{"id" "x"}`, 400, "malformed_json", "", ""},
		{"trailing data", "/v1/currencies", `{"code":"X","name":"X"} {}`, 400, "malformed_json", "", "exactly one"},
		{"empty body", "/v1/currencies", ``, 400, "malformed_json", "", "empty"},
		{"feature sum without dimension", "/v1/features", `{"id":"t","name":"T","meter":{"kind":"event_based","event_name":"llm","aggregation":"SUM"}}`, 400, "required", "meter.dimension", ""},
		{"subscription to unknown plan", "/v1/subscriptions", sub(`"plan_id":"ai-prepaid"`, `"plan_id":"nope"`), 400, "unknown_reference", "plan_id", ""},
		{"subscription of unknown customer", "/v1/subscriptions", sub(`"customer_id":"acme"`, `"customer_id":"nope"`), 400, "unknown_reference", "customer_id", ""},
		{"subscription bad currency", "/v1/subscriptions", sub(`"currency":"USD"`, `"currency":"US"`), 400, "invalid", "currency", ""},
		{"subscription bad date", "/v1/subscriptions", sub(`"schedule":{"start":"now"}`, `"schedule":{"start":"at","at":"tomorrow"}`), 400, "invalid_value", "schedule.at", ""},
		{"subscription start too far back", "/v1/subscriptions", sub(`"schedule":{"start":"now"}`, `"schedule":{"start":"at","at":"2001-01-01T00:00:00Z"}`), 400, "invalid", "schedule.at", "10 years"},
		{"subscription negative override rate", "/v1/subscriptions", sub(`"credits_per_unit":"1"`, `"credits_per_unit":"-2"`), 400, "invalid", "consumption[0].credits_per_unit", ""},
		{"subscription maps pre-aggregated meter", "/v1/subscriptions", sub(`"feature_id":"ai-agent-email"`, `"feature_id":"storage"`), 400, "meter_not_event_based", "consumption[0].feature_id", "Only event-based meters are currently supported for credit consumption mapping"},
		{"subscription bad expiration", "/v1/subscriptions", sub(`"rule":"never"`, `"rule":"duration","duration":"30 days"`), 400, "invalid", "included_credits.expiration.duration", "ISO 8601"},
		{"subscription sets start_at", "/v1/subscriptions", sub(`"currency":"USD"`, `"currency":"USD","start_at":"2030-01-01T00:00:00Z"`), 400, "read_only", "start_at", ""},
		{"nested unknown field", "/v1/plans", plan(`"overage_policy":"unfunded"`, `"overage_policy":"unfunded","rollover":true`), 400, "unknown_field", "prepaid.rollover", "rollover"},
		{"unknown field in an array", "/v1/plans", plan(`"credits_per_unit":"1"`, `"credits_per_unit":"1","unit":"email"`), 400, "unknown_field", "prepaid.consumption[0].unit", "unit"},
		{"subscription unknown field", "/v1/subscriptions/preview", sub(`"currency":"USD"`, `"currency":"USD","discount":5`), 400, "unknown_field", "discount", ""},
		{"customer bad country", "/v1/customers", `{"id":"x","name":"X","address":{"line1":"1","city":"c","country":"USA"}}`, 400, "invalid", "address.country", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", tc.path, admin, tc.body)
			code, field, msg := r.err()
			if r.status != tc.status || code != tc.code || field != tc.field || !strings.Contains(msg, tc.msgIn) {
				t.Errorf("got %d %s", r.status, r.raw)
			}
		})
	}
	e.must(404, "GET", "/v1/plans/p2", admin, "")
	if l := e.must(200, "GET", "/v1/subscriptions", admin, ""); len(l.body["data"].([]any)) != 0 {
		t.Errorf("a rejected subscription was stored: %s", l.raw)
	}
	if len(e.ledger.grants) != 0 {
		t.Errorf("ledger called for rejected requests")
	}
	// A plan of another billing model cannot be subscribed to as prepaid.
	e.must(201, "POST", "/v1/plans", admin, `{"id":"pp","product":"ai-agents","name":"Postpaid","type":"paid","billing_model":"postpaid"}`)
	r := e.do("POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"plan_id":"ai-prepaid"`, `"plan_id":"pp"`, 1))
	if code, field, _ := r.err(); r.status != 400 || code != "invalid" || field != "plan_id" {
		t.Errorf("subscription to a postpaid plan: %s", r.raw)
	}
	// PUT with a contradicting id.
	r = e.do("PUT", "/v1/plans/other", admin, planJSON)
	if _, field, _ := r.err(); r.status != 400 || field != "id" {
		t.Errorf("PUT with another id: %s", r.raw)
	}
	if r := e.do("POST", "/v1/currencies", admin, aitJSON, "Content-Type", "text/plain"); r.status != 415 {
		t.Errorf("text/plain body: %d", r.status)
	}
}

func TestCustomerTokensAreScoped(t *testing.T) {
	e := newEnv(t)
	e.seed()
	acmeSub := e.must(201, "POST", "/v1/subscriptions", admin, seedSub).body["id"].(string)
	globexSub := e.must(201, "POST", "/v1/subscriptions", admin, strings.Replace(strings.Replace(seedSub, `"customer_id":"acme"`, `"customer_id":"globex"`, 1), `"billing":{"provider":"Customers EMEA",`, `"billing":{`, 1)).body["id"].(string)
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	e.must(404, "POST", "/v1/customers/nobody/tokens", admin, "")

	e.must(200, "GET", "/v1/subscriptions/"+acmeSub, tok, "")
	e.must(404, "GET", "/v1/subscriptions/"+globexSub, tok, "")
	own := e.must(200, "GET", "/v1/customers/acme/subscriptions", tok, "")
	if d := own.body["data"].([]any); len(d) != 1 || d[0].(map[string]any)["id"] != acmeSub {
		t.Errorf("own subscriptions: %s", own.raw)
	}
	e.must(403, "GET", "/v1/customers/globex/subscriptions", tok, "")
	e.must(403, "GET", "/v1/customers/globex", tok, "")
	e.must(200, "GET", "/v1/customers/acme", tok, "")
	e.must(200, "GET", "/v1/plans/ai-prepaid", tok, "")
	// Admin routes refuse a customer token.
	e.must(403, "GET", "/v1/subscriptions", tok, "")
	e.must(403, "POST", "/v1/subscriptions", tok, seedSub)
	e.must(403, "POST", "/v1/customers/acme/tokens", tok, "")
	e.must(403, "GET", "/v1/customers", tok, "")
	// No or unknown token.
	e.must(401, "GET", "/v1/plans", "", "")
	e.must(401, "GET", "/v1/plans", "not-a-token", "")
	e.must(200, "GET", "/healthz", "", "")
	e.must(404, "GET", "/v1/nope", admin, "")
}

// TestOpenAPIDescribesEveryRoute fails when a route of the table is missing
// from api/openapi.yaml or the document describes a route the server lacks.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	f, err := os.Open("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]bool{}
	inPaths, path := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "paths:":
			inPaths = true
		case inPaths && line != "" && !strings.HasPrefix(line, " "):
			inPaths = false
		case inPaths && strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":"):
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case inPaths && path != "" && strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     "):
			m := strings.TrimSuffix(strings.TrimSpace(line), ":")
			switch m {
			case "get", "post", "put", "patch", "delete":
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	srv := api.NewServer(api.Options{})
	var missing []string
	served := map[string]bool{}
	for _, r := range srv.Routes() {
		k := r.Method + " " + r.Path
		served[k] = true
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.yaml: %v", missing)
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("openapi.yaml documents %s, which the server does not serve", k)
		}
	}
	if len(documented) < 20 {
		t.Errorf("parsed only %d operations from openapi.yaml; is the parser broken?", len(documented))
	}
	// The served document is the file.
	hs := httptest.NewServer(srv)
	defer hs.Close()
	res, err := http.Get(hs.URL + "/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	file, _ := os.ReadFile("openapi.yaml")
	if !bytes.Equal(b, file) {
		t.Error("GET /v1/openapi.yaml differs from api/openapi.yaml")
	}
}

func TestWithoutCatalog(t *testing.T) {
	hs := httptest.NewServer(api.NewServer(api.Options{AdminTokens: []string{admin}}))
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL+"/v1/plans", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no catalog: %d, want 503", res.StatusCode)
	}
}
