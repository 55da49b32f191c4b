package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/webhook"
)

// loadSpec loads api/openapi.yaml with kin-openapi and validates it as an
// OpenAPI 3 document.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// TestOpenAPILint holds the document to the rules a generated client and a
// reader need: a unique camelCase operationId and a summary on every
// operation, the error responses of every authenticated operation, every
// path parameter declared, and every error answered with the Error schema.
func TestOpenAPILint(t *testing.T) {
	doc := loadSpec(t)
	camel := regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	param := regexp.MustCompile(`\{([^}]+)\}`)
	ids := map[string]string{}
	ops := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops++
			where := method + " " + path
			switch {
			case op.OperationID == "":
				t.Errorf("%s: no operationId", where)
			case !camel.MatchString(op.OperationID):
				t.Errorf("%s: operationId %q is not camelCase", where, op.OperationID)
			case ids[op.OperationID] != "":
				t.Errorf("%s: operationId %q also names %s", where, op.OperationID, ids[op.OperationID])
			}
			ids[op.OperationID] = where
			if strings.TrimSpace(op.Summary) == "" {
				t.Errorf("%s: no summary", where)
			}
			declared := map[string]bool{}
			for _, ps := range []openapi3.Parameters{item.Parameters, op.Parameters} {
				for _, p := range ps {
					if p.Value.In == "path" {
						declared[p.Value.Name] = true
						if !strings.Contains(path, "{"+p.Value.Name+"}") {
							t.Errorf("%s: path parameter %q is not in the path", where, p.Value.Name)
						}
					}
				}
			}
			for _, m := range param.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter %q is not declared", where, m[1])
				}
			}
			public := op.Security != nil && len(*op.Security) == 0
			var has4xx bool
			for code, r := range op.Responses.Map() {
				if code[0] == '4' || code[0] == '5' {
					has4xx = has4xx || code[0] == '4'
					if r.Ref != "#/components/responses/Error" && !(where == "POST /v1/events" && code == "400") {
						t.Errorf("%s: %s answers %q, not the shared Error response", where, code, r.Ref)
					}
				}
			}
			if public {
				continue
			}
			if !has4xx {
				t.Errorf("%s: no 4xx response", where)
			}
			// Every authenticated route can refuse the token and lose a store.
			for _, code := range []string{"401", "500", "503"} {
				if op.Responses.Status(atoi(code)) == nil {
					t.Errorf("%s: no %s response", where, code)
				}
			}
			if method == http.MethodPost || method == http.MethodPut {
				if op.Responses.Status(415) == nil {
					t.Errorf("%s: a body route without 415", where)
				}
			}
			if strings.Contains(path, "{") && op.Responses.Status(404) == nil {
				t.Errorf("%s: a path with an id without 404", where)
			}
		}
	}
	if ops < 30 {
		t.Errorf("linted only %d operations", ops)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// contract validates, against the document, every response the server
// gives and every request it accepts (2xx).
type contract struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	// responsesOnly: the tests that send malformed requests on purpose
	// validate only what the server answers.
	responsesOnly bool
	mu            sync.Mutex
	seen          map[string]map[int]bool // operationId → statuses answered
}

// validated serves h with every response checked against openapi.yaml: the
// API tests' servers use it, so each of their answers is part of the contract.
func validated(t *testing.T, h http.Handler) http.Handler {
	c := newContract(t)
	c.responsesOnly = true
	return c.wrap(h)
}

func newContract(t *testing.T) *contract {
	doc := loadSpec(t)
	doc.Servers = nil // match by path, whatever the test server's address
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, doc: doc, router: router, seen: map[string]map[int]bool{}}
}

func (c *contract) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := c.check(r, rec); err != nil {
			c.t.Errorf("contract: %s %s → %d: %v\nresponse: %.400s", r.Method, r.URL.RequestURI(), rec.Code, err, rec.Body.String())
		}
	})
}

func (c *contract) check(r *http.Request, rec *httptest.ResponseRecorder) error {
	ctx := context.Background()
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// A path or method the document lacks: only 404 and 405, as an Error.
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			return fmt.Errorf("no operation in openapi.yaml (%v) and status %d", err, rec.Code)
		}
		var v any
		if err := decodeJSON(rec.Body.Bytes(), &v); err != nil {
			return err
		}
		es := c.doc.Components.Schemas["Error"]
		if es == nil {
			return fmt.Errorf("openapi.yaml has no Error schema")
		}
		return es.Value.VisitJSON(v)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}
	opts.WithCustomSchemaErrorFunc(shortSchemaError)
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	// POST /v1/events answers 202 for a batch with invalid items, listing
	// them under rejected: its body is held to the schema only when none was.
	if !c.responsesOnly && rec.Code < 400 && !(route.Operation.OperationID == "sendEvents" && bytes.Contains(rec.Body.Bytes(), []byte(`"rejected":[{`))) {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("the server accepted a request openapi.yaml refuses: %w", err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.Options.WithCustomSchemaErrorFunc(shortSchemaError)
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return err
	}
	if resp := route.Operation.Responses.Status(rec.Code); resp != nil && resp.Value != nil {
		if mt := resp.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil &&
			strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			var v any
			if err := decodeJSON(rec.Body.Bytes(), &v); err != nil {
				return err
			}
			if err := undocumented(mt.Schema.Value, v, ""); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := route.Operation.OperationID
	if c.seen[id] == nil {
		c.seen[id] = map[int]bool{}
	}
	c.seen[id][rec.Code] = true
	return nil
}

// TestContract runs the whole API on the real services (Redis, ClickHouse,
// a Kafka-protocol broker) through a broad flow, success and every class of
// error, and validates each request and response against api/openapi.yaml.
func TestContract(t *testing.T) {
	c := newContract(t)
	st := apptest.Stores(t)
	conn, aw, store, acc := st.Conn, st.Writer, st.Catalog, st.Accounts
	b := testenv.Broker(t, 2, "usage-events", "usage-events-dlq")
	ev := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer ev.Close()
	hooks, err := webhook.NewStore(st.RC, st.Prefix, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc.Observer = &webhook.Notifier{Emitter: hooks, Notes: st.Balances, Ledger: st.Balances}
	srv := api.NewServer(api.Options{Catalog: store, Ledger: acc, Balances: acc, Events: ev, Reports: archive.Reports{Conn: conn}, AdminTokens: []string{admin},
		Logger: slog.New(slog.DiscardHandler), Webhooks: hooks, PaymentSecret: paymentSecret,
		DeadLetters: ingest.DeadLetterReader{Conn: ingest.Plain(b.Addr()), Topic: "usage-events-dlq"}})
	hs := httptest.NewServer(c.wrap(srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}

	e.must(200, "GET", "/healthz", "", "")
	e.must(200, "GET", "/readyz", "", "")
	e.must(200, "GET", "/v1/openapi.yaml", "", "")

	// Catalog: creation, replay, conflict, reads, lists.
	e.seed()
	e.must(200, "POST", "/v1/currencies", admin, aitJSON)
	e.must(409, "POST", "/v1/currencies", admin, `{"code":"AIT","name":"Other"}`)
	e.must(200, "POST", "/v1/features", admin, emailJSON)
	e.must(200, "POST", "/v1/plans", admin, planJSON)
	e.must(200, "POST", "/v1/customers", admin, acmeJSON)
	for _, p := range []string{"/v1/currencies", "/v1/currencies/AIT", "/v1/features", "/v1/features/ai-agent-email", "/v1/features/storage",
		"/v1/plans", "/v1/plans/ai-prepaid", "/v1/customers", "/v1/customers/acme"} {
		e.must(200, "GET", p, admin, "")
	}
	e.must(200, "PUT", "/v1/plans/ai-prepaid", admin, planJSON)
	e.must(200, "PUT", "/v1/customers/globex", admin, `{"id":"globex","name":"Globex Corp","email":"ap@globex.example"}`)

	// Subscriptions: preview, creation, replay, reads.
	e.must(200, "POST", "/v1/subscriptions/preview", admin, seedSub)
	s := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "c-1")
	e.must(200, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "c-1")
	id := s.body["id"].(string)
	base := "/v1/subscriptions/" + id
	e.must(200, "GET", "/v1/subscriptions", admin, "")
	e.must(200, "GET", base, admin, "")
	e.must(200, "GET", "/v1/customers/acme/subscriptions", admin, "")
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	short := e.must(201, "POST", "/v1/customers/acme/tokens", admin, `{"expires_in":"P30D"}`).body
	e.must(200, "GET", "/v1/customers/acme/tokens", tok, "")
	e.must(204, "DELETE", "/v1/customers/acme/tokens/"+short["id"].(string), tok, "")
	other := e.must(201, "POST", "/v1/customers/globex/tokens", admin, "").body["token"].(string)
	e.must(200, "GET", "/v1/customers/acme", tok, "")
	e.must(200, "GET", "/v1/plans", tok, "")

	// Balances: top-ups, adjustments, check, ledger, paging.
	e.must(201, "POST", base+"/topups", tok, `{"amount":"500"}`, "Idempotency-Key", "t-1")
	e.must(200, "POST", base+"/topups", tok, `{"amount":"500"}`, "Idempotency-Key", "t-1")
	e.must(201, "POST", base+"/topups", tok, `{"amount":"250"}`, "Idempotency-Key", "t-2")
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-50","reason":"goodwill","actor":"alice"}`, "Idempotency-Key", "a-1")
	e.must(200, "POST", base+"/adjustments", admin, `{"amount":"-50","reason":"goodwill","actor":"alice"}`, "Idempotency-Key", "a-1")
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"30","reason":"promo","actor":"alice"}`, "Idempotency-Key", "a-2")
	p1 := e.must(200, "GET", base+"/balance?limit=2", tok, "")
	if p1.body["next_offset"] == nil {
		t.Errorf("balance page 1 of 4 grants has no next_offset: %s", p1.raw)
	}
	if p2 := e.must(200, "GET", base+"/balance?limit=2&offset=2", tok, ""); p2.body["next_offset"] != nil {
		t.Errorf("last balance page has a next_offset: %s", p2.raw)
	}
	e.must(200, "POST", base+"/check", tok, `{"amount":"10"}`)
	e.must(200, "GET", base+"/ledger", tok, "")
	e.must(200, "GET", base+"/ledger?from_seq=2&limit=2", tok, "")

	// Reports over a rated line in the archive.
	now := time.Now().UTC()
	if err := aw.WriteUsage(context.Background(), []archive.RatedRow{{
		EventID: "ev-1", CustomerID: "acme", SubscriptionID: id, Feature: "ai-agent-email", EventName: "email.sent",
		Quantity: decimal.NewFromInt(3), Credits: credit.MustParse("3"), Funded: credit.MustParse("3"), Unfunded: credit.MustParse("0"),
		CreditCurrency: "AIT", MoneyValue: decimal.RequireFromString("0.12"), MoneyCurrency: "USD",
		EventTime: now, RatedAt: now, Status: "applied", Topic: "usage-events",
	}}); err != nil {
		t.Fatal(err)
	}
	day := now.Format("2006-01-02")
	next := now.AddDate(0, 0, 1).Format("2006-01-02")
	if u := e.must(200, "GET", base+"/usage?from="+day+"&to="+next, tok, ""); len(u.body["rows"].([]any)) != 1 {
		t.Errorf("usage: %s", u.raw)
	}
	e.must(200, "GET", base+"/usage?from="+day+"&to="+next+"&group_by=day", admin, "")
	e.must(200, "GET", base+"/usage?from="+day+"&to="+next+"&group_by=hour,feature,dim:model&dim=model:gpt-x&feature=ai-agent-email", tok, "")
	e.must(200, "GET", "/v1/customers/acme/usage?from="+day+"&to="+next+"&group_by=month,subscription&format=csv", tok, "")
	e.must(200, "GET", "/v1/usage?from="+day+"&to="+next+"&group_by=customer,day&limit=1&customer=acme", admin, "")
	e.must(400, "GET", "/v1/usage?from="+day+"&to="+next+"&group_by=week", admin, "")
	if m := e.must(200, "GET", base+"/meters/ai-agent-email?from="+day+"&to="+next+"&window=hour", tok, ""); !strings.Contains(m.raw, `"value":"3"`) {
		t.Errorf("meter: %s", m.raw)
	}
	e.must(200, "GET", base+"/invoices?period="+now.Format("2006-01"), tok, "")
	e.must(200, "GET", base+"/invoices?period="+now.Format("2006-01")+"&format=csv", tok, "")

	// Events: accepted, partly rejected, all rejected.
	good := `{"id":"e1","customer_id":"acme","event_name":"email.sent","timestamp":"` + now.Format(time.RFC3339) + `"}`
	e.must(202, "POST", "/v1/events", admin, `{"events":[`+good+`]}`)
	e.must(202, "POST", "/v1/events", admin, `{"events":[`+good+`,{"id":"e2","customer_id":"acme","event_name":"email.sent","timestamp":"yesterday"}]}`)
	e.must(400, "POST", "/v1/events", admin, `{"events":[{"id":"e3","customer_id":"acme","event_name":"email.sent"}]}`)
	e.must(400, "POST", "/v1/events", admin, `{"events":[]}`)

	// Webhooks: an endpoint, the delivery a top-up queues for it, errors.
	wh := e.must(201, "POST", "/v1/webhooks", admin, `{"url":"http://127.0.0.1:9/hooks","events":["topup.created"]}`).body["id"].(string)
	e.must(201, "POST", base+"/topups", tok, `{"amount":"300"}`, "Idempotency-Key", "t-wh")
	e.must(200, "GET", "/v1/webhooks", admin, "")
	e.must(200, "GET", "/v1/webhooks/"+wh, admin, "")
	if d := e.must(200, "GET", "/v1/webhooks/"+wh+"/deliveries", admin, ""); !strings.Contains(d.raw, `"status":"pending"`) {
		t.Errorf("webhook deliveries: %s", d.raw)
	}
	e.must(400, "POST", "/v1/webhooks", admin, `{"url":"ftp://x","events":["topup.created"]}`)
	e.must(403, "GET", "/v1/webhooks", tok, "")
	e.must(204, "DELETE", "/v1/webhooks/"+wh, admin, "")
	e.must(404, "GET", "/v1/webhooks/"+wh, admin, "")
	// Dead letters: one, listed; a bad cursor.
	if err := ev.SendDLQ(context.Background(), []ingest.DeadLetter{{Msg: kafka.Message{Topic: "usage-events", Key: []byte("nobody"),
		Value: []byte(`{"id":"d1","customer_id":"nobody","event_name":"email.sent","timestamp":"` + now.Format(time.RFC3339) + `"}`)},
		Reason: ingest.ReasonUnknownCust, Field: "customer_id", Detail: "customer nobody is unknown"}}); err != nil {
		t.Fatal(err)
	}
	if d := e.must(200, "GET", "/v1/dead-letters?limit=1", admin, ""); d.body["total"] != 1.0 {
		t.Errorf("dead letters: %s", d.raw)
	}
	e.must(400, "GET", "/v1/dead-letters?cursor=nope", admin, "")
	e.must(403, "GET", "/v1/dead-letters", tok, "")

	// Errors of each class.
	e.must(401, "GET", "/v1/plans", "", "")
	e.must(401, "GET", "/v1/plans", "cmc_unknown", "")
	e.must(403, "POST", "/v1/plans", tok, planJSON)
	e.must(403, "GET", "/v1/customers", tok, "")
	e.must(403, "GET", "/v1/customers/globex", tok, "")
	e.must(403, "POST", base+"/adjustments", tok, `{"amount":"1","reason":"x","actor":"a"}`, "Idempotency-Key", "a-x")
	e.must(404, "GET", "/v1/plans/nope", admin, "")
	e.must(404, "GET", base+"/balance", other, "")
	e.must(404, "GET", "/v1/nope", admin, "")
	e.must(405, "DELETE", "/v1/plans/ai-prepaid", admin, "")
	e.must(400, "POST", "/v1/features", admin, `{"id":"x","name":"X","meter":{"kind":"event_based"},"extra":1}`)
	e.must(400, "POST", "/v1/plans", admin, `{"id":`)
	e.must(400, "POST", base+"/check", tok, `{}`)
	e.must(400, "GET", base+"/balance?limit=0", tok, "")
	e.must(400, "GET", base+"/ledger?from_seq=x", tok, "")
	e.must(400, "GET", base+"/usage?from=yesterday&to="+next, tok, "")
	e.must(400, "GET", base+"/invoices?period=2026-13", tok, "")
	e.must(400, "POST", base+"/topups", tok, `{"amount":"500"}`)
	e.must(409, "POST", base+"/topups", tok, `{"amount":"600"}`, "Idempotency-Key", "t-1")
	e.must(409, "POST", "/v1/subscriptions", admin, strings.Replace(seedSub, `"USD"`, `"EUR"`, 1), "Idempotency-Key", "c-1")
	e.must(422, "POST", base+"/topups", tok, `{"amount":"100"}`, "Idempotency-Key", "t-small")
	e.must(422, "POST", base+"/adjustments", admin, `{"amount":"-100000","reason":"x","actor":"a"}`, "Idempotency-Key", "a-big")
	e.must(415, "POST", "/v1/currencies", admin, aitJSON, "Content-Type", "text/plain")
	e.must(413, "POST", "/v1/customers", admin, `{"id":"big","name":"`+strings.Repeat("x", 2<<20)+`"}`)

	// Payment confirmation: pending, read, confirmed by an admin and by the provider's callback.
	e.must(201, "POST", "/v1/plans", admin, payPlan)
	paid := e.must(201, "POST", "/v1/subscriptions", admin, strings.NewReplacer(`"plan_id":"ai-prepaid"`, `"plan_id":"ai-pay"`, `"customer_id":"acme"`, `"customer_id":"globex"`).Replace(seedSub), "Idempotency-Key", "c-pay").body["id"].(string)
	tp := e.must(202, "POST", "/v1/subscriptions/"+paid+"/topups", admin, `{"amount":"500"}`, "Idempotency-Key", "p-1").body["id"].(string)
	e.must(200, "POST", "/v1/subscriptions/"+paid+"/topups", admin, `{"amount":"500"}`, "Idempotency-Key", "p-1")
	e.must(200, "GET", "/v1/subscriptions/"+paid+"/topups/"+tp, admin, "")
	e.must(200, "GET", "/v1/subscriptions/"+paid+"/topups?status=pending", admin, "")
	e.must(200, "POST", "/v1/subscriptions/"+paid+"/topups/"+tp+"/confirm", admin, "")
	tp = e.must(202, "POST", "/v1/subscriptions/"+paid+"/topups", admin, `{"amount":"500"}`, "Idempotency-Key", "p-2").body["id"].(string)
	cb := `{"subscription_id":"` + paid + `","topup_id":"` + tp + `","status":"succeeded"}`
	e.must(401, "POST", "/v1/payments/callback", "", cb, "Creditmeter-Signature", "t=1,v1=00")
	e.must(200, "POST", "/v1/payments/callback", "", cb, "Creditmeter-Signature", webhook.Sign(paymentSecret, time.Now(), []byte(cb)))

	// Auto-recharge: the plan's (none), an override, back to the plan's.
	e.must(200, "GET", "/v1/subscriptions/"+paid+"/auto-recharge", admin, "")
	e.must(200, "PUT", "/v1/subscriptions/"+paid+"/auto-recharge", admin, `{"enabled":true,"threshold":"50","amount":"300"}`)
	e.must(422, "PUT", "/v1/subscriptions/"+paid+"/auto-recharge", admin, `{"enabled":true,"threshold":"50","amount":"10"}`)
	e.must(200, "DELETE", "/v1/subscriptions/"+paid+"/auto-recharge", admin, "")
	// Lifecycle: a plan change, then the successor cancelled.
	ch := e.must(201, "POST", base+"/change-plan", admin, `{"plan_id":"ai-prepaid"}`)
	nid := ch.body["subscription"].(map[string]any)["id"].(string)
	e.must(200, "PATCH", "/v1/subscriptions/"+nid, admin, `{"end_at":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)
	e.must(200, "PATCH", "/v1/subscriptions/"+nid, admin, `{"end_at":null}`)
	e.must(200, "POST", "/v1/subscriptions/"+nid+"/cancel", admin, "")
	e.must(409, "POST", "/v1/subscriptions/"+nid+"/cancel", admin, "")

	// Every operation of the document was exercised with a success.
	var missed []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			ok := false
			for code := range c.seen[op.OperationID] {
				ok = ok || code < 300
			}
			if !ok {
				missed = append(missed, method+" "+path)
			}
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Errorf("operations the flow never answered with a success: %v", missed)
	}
}

// undocumented fails on a field of v that schema s does not describe, so a
// field the server adds without the document is drift too. A schema that
// lists no properties (a free-form object) allows any.
func undocumented(s *openapi3.Schema, v any, at string) error {
	if s == nil {
		return nil
	}
	props := map[string]*openapi3.Schema{}
	var collect func(s *openapi3.Schema)
	collect = func(s *openapi3.Schema) {
		for k, p := range s.Properties {
			props[k] = p.Value
		}
		for _, sub := range append(append(append(openapi3.SchemaRefs{}, s.AllOf...), s.OneOf...), s.AnyOf...) {
			collect(sub.Value)
		}
	}
	collect(s)
	switch v := v.(type) {
	case map[string]any:
		if len(props) == 0 {
			return nil
		}
		for k, x := range v {
			p, ok := props[k]
			if !ok {
				return fmt.Errorf("%s/%s: the response has a field openapi.yaml does not describe", at, k)
			}
			if err := undocumented(p, x, at+"/"+k); err != nil {
				return err
			}
		}
	case []any:
		if s.Items == nil {
			return nil
		}
		for i, x := range v {
			if err := undocumented(s.Items.Value, x, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// shortSchemaError names the field at fault, not the whole schema.
func shortSchemaError(err *openapi3.SchemaError) string {
	return "/" + strings.Join(err.JSONPointer(), "/") + ": " + err.Reason
}

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestContractCatchesDrift: the checker itself refuses an undocumented
// status, a field the document lacks, a wrong type and a malformed error.
func TestContractCatchesDrift(t *testing.T) {
	c := newContract(t)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		ok           bool
	}{
		{"GET", "/v1/currencies/AIT", 200, `{"code":"AIT","name":"AI Tokens"}`, true},
		{"GET", "/v1/currencies/AIT", 200, `{"code":"AIT","name":"AI Tokens","rate":"1"}`, false},
		{"GET", "/v1/subscriptions/s1/balance", 200, `{"total":"1","grants":[{"id":"g","remaining":"1","color":"red"}]}`, false},
		{"GET", "/v1/subscriptions/s1/balance", 200, `{"total":1}`, false},
		{"GET", "/v1/currencies/AIT", 418, `{"error":{"code":"teapot","message":"x"}}`, false},
		{"GET", "/v1/currencies/AIT", 404, `{"error":{"code":"not_found"}}`, false},
		{"GET", "/v1/nope", 404, `{"error":{"code":"not_found","message":"no route"}}`, true},
		{"GET", "/v1/nope", 200, `{}`, false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(tc.status)
		rec.WriteString(tc.body)
		if err := c.check(r, rec); (err == nil) != tc.ok {
			t.Errorf("%s %s → %d %s: err %v, want ok=%v", tc.method, tc.path, tc.status, tc.body, err, tc.ok)
		}
	}
}
