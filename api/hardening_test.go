package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// With the catalog's Redis down every route that needs it answers 503, as the
// balance routes do, never 500.
func TestCatalogRedisDownIs503(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rc.Close()
	store, err := catalogstore.New(rc, "down:")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}
	for _, c := range []struct{ method, path, token, body string }{
		{"GET", "/v1/currencies", admin, ""},
		{"GET", "/v1/currencies/AIT", admin, ""},
		{"POST", "/v1/currencies", admin, aitJSON},
		{"GET", "/v1/subscriptions/s1", admin, ""},
		{"POST", "/v1/customers/acme/tokens", admin, ""},
		{"GET", "/v1/subscriptions/s1", "cmc_some-customer-token", ""}, // the token lookup needs Redis
	} {
		r := e.do(c.method, c.path, c.token, c.body)
		if code, _, _ := r.err(); r.status != http.StatusServiceUnavailable || code != "unavailable" {
			t.Errorf("%s %s with Redis down: %d %s, want 503 unavailable", c.method, c.path, r.status, r.raw)
		}
	}
}

// newSubEnv is the API on the real services with the seed's subscription.
func newSubEnv(t *testing.T) (*env, string) {
	t.Helper()
	e, _, _ := newBalanceEnv(t)
	e.seed()
	c := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1")
	return e, "/v1/subscriptions/" + c.body["id"].(string)
}

func TestCheckNeedsAmount(t *testing.T) {
	e, base := newSubEnv(t)
	for _, body := range []string{`{}`, `{"amount":null}`} {
		r := e.do("POST", base+"/check", admin, body)
		if code, field, _ := r.err(); r.status != 400 || code != "required" || field != "amount" {
			t.Errorf("check %s: %d %s, want 400 required amount", body, r.status, r.raw)
		}
	}
	if r := e.must(200, "POST", base+"/check", admin, `{"amount":"0"}`); r.body["allowed"] != true {
		t.Errorf("check 0: %s", r.raw)
	}
}

func TestWrongMethodIs405(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/plans", "GET, HEAD, POST"},
		{"PATCH", "/v1/plans/p1", "GET, HEAD, PUT"},
		{"DELETE", "/v1/subscriptions/s1/balance", "GET, HEAD"},
		{"GET", "/v1/events", "POST"},
		{"PUT", "/v1/subscriptions/preview", "POST"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := e.do(c.method, c.path, admin, "")
		if code, _, _ := r.err(); r.status != http.StatusMethodNotAllowed || code != "method_not_allowed" || r.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %q", c.method, c.path, r.status, r.header.Get("Allow"), r.raw, c.allow)
		}
	}
	if r := e.do("GET", "/v1/nothing", admin, ""); r.status != 404 {
		t.Errorf("unknown path: %d %s", r.status, r.raw)
	}
}

func TestInvoicePeriodRange(t *testing.T) {
	e, base := newSubEnv(t)
	for _, p := range []string{"9999-12", "1900-01", "1969-12", "2106-01", "2026-13", "2026-1", ""} {
		r := e.do("GET", base+"/invoices?period="+p, admin, "")
		if _, field, _ := r.err(); r.status != 400 || field != "period" {
			t.Errorf("period %q: %d %s, want 400 naming period", p, r.status, r.raw)
		}
	}
	for _, p := range []string{"1970-01", "2105-12"} {
		e.must(200, "GET", base+"/invoices?period="+p, admin, "")
	}
}

func TestUsageErrorsNameTheField(t *testing.T) {
	e, base := newSubEnv(t)
	for _, c := range []struct{ query, field string }{
		{"from=2026-11-10&to=2026-11-01", "from"},
		{"from=2026-11-01&to=2026-11-01", "from"},
		{"from=2026-11-01&to=tomorrow", "to"},
		{"from=2026-11-01", "to"},
		{"from=yesterday&to=2026-11-01", "from"},
		{"to=2026-11-01", "from"},
		{"from=2024-01-01&to=2026-01-01", "to"},
		{"from=2026-11-01&to=2026-11-02&group_by=week", "group_by"},
		{"from=2026-11-01&to=2026-11-02&feature=nope", "feature"},
		{"from=2026-11-01&to=2026-11-02&format=xml", "format"},
	} {
		r := e.do("GET", base+"/usage?"+c.query, admin, "")
		if _, field, _ := r.err(); r.status != 400 || field != c.field {
			t.Errorf("usage?%s: %d %s, want 400 naming %s", c.query, r.status, r.raw, c.field)
		}
	}
	e.must(200, "GET", base+"/usage?from=2026-11-01&to=2026-11-02&group_by=day", admin, "")
	e.must(200, "GET", base+"/usage?from=2026-11-01&to=2026-11-02&group_by=hour", admin, "") // 400 before issue 18
}

// A huge number is refused before it is parsed (parsing 1 MB of digits took
// seconds of CPU) and never echoed back.
func TestLongNumbersAreRefusedUnparsed(t *testing.T) {
	e, base := newSubEnv(t)
	digits := strings.Repeat("7", 1<<20-100)
	for _, c := range []struct{ path, body string }{
		{"/check", `{"amount":"` + digits + `"}`},
		{"/check", `{"amount":` + digits + `}`},
		{"/topups", `{"amount":"` + digits + `"}`},
		{"/topups", `{"amount":1` + strings.Repeat("0", 40) + `}`},
		{"/adjustments", `{"amount":"0.` + digits + `","reason":"r","actor":"a"}`},
	} {
		start := time.Now()
		r := e.do("POST", base+c.path, admin, c.body, "Idempotency-Key", "k-long")
		took := time.Since(start)
		code, field, _ := r.err()
		if r.status != 400 || code != "too_long" || field != "amount" {
			t.Errorf("%s with %d bytes: %d %.300s, want 400 too_long amount", c.path, len(c.body), r.status, r.raw)
		}
		if len(r.raw) > 400 || strings.Contains(r.raw, "7777777777") {
			t.Errorf("%s: the error echoes the value (%d bytes)", c.path, len(r.raw))
		}
		if took > 2*time.Second {
			t.Errorf("%s: %s to refuse a long number", c.path, took)
		}
	}
	// A long string that is not a number is no number and is judged as before.
	r := e.do("POST", "/v1/customers", admin, `{"id":"c-long","name":"`+strings.Repeat("9", 60)+`"}`)
	if r.status != 201 {
		t.Errorf("a customer named with 60 digits: %d %s", r.status, r.raw)
	}
}

// One content-type rule for every route with a JSON body: application/json,
// any +json type, or none; anything else is 415.
func TestJSONContentTypeRule(t *testing.T) {
	rc := testenv.Redis(t)
	store, err := catalogstore.New(rc, testenv.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, Events: w, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}
	event := `{"events":[{"id":"e1","customer_id":"acme","event_name":"email.sent","timestamp":"2026-11-27T10:00:00Z"}]}`
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", "application/jsonx", "not a type"} {
		for _, c := range []struct{ path, body string }{{"/v1/events", event}, {"/v1/currencies", aitJSON}} {
			r := e.do("POST", c.path, admin, c.body, "Content-Type", ct)
			if code, _, _ := r.err(); r.status != http.StatusUnsupportedMediaType || code != "unsupported_media_type" {
				t.Errorf("POST %s as %s: %d %s, want 415", c.path, ct, r.status, r.raw)
			}
		}
	}
	for i, ct := range []string{"", "application/json", "application/json; charset=utf-8", "application/vnd.creditmeter+json", "Application/JSON"} {
		r := e.doRaw("POST", "/v1/events", admin, event, ct)
		if r.status != http.StatusAccepted {
			t.Errorf("POST /v1/events as %q: %d %s", ct, r.status, r.raw)
		}
		want := 201
		if i > 0 {
			want = 200
		}
		if r := e.doRaw("POST", "/v1/currencies", admin, aitJSON, ct); r.status != want {
			t.Errorf("POST /v1/currencies as %q: %d %s", ct, r.status, r.raw)
		}
	}
}

// When Redis takes the included credits but the archive does not, the error
// says what is stored and what is not, and the same request heals it.
func TestArchiveFailureSaysWhatIsStored(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	conn, cc := testenv.ClickHouse(t) // no tables yet: every archive write fails
	store, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := balance.New(rc, balance.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	acc := &accounts.Accounts{Store: bs, Archive: archive.NewWriter(conn)}
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, Ledger: acc, Balances: acc, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}
	e.seed()
	r := e.do("POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1")
	code, _, msg := r.err()
	if r.status != 503 || code != "archive_unavailable" || !strings.Contains(msg, "stored (balance 100, seq 1)") ||
		!strings.Contains(msg, "archive entry is not") || !strings.Contains(msg, "Idempotency-Key") {
		t.Fatalf("create with the archive failing: %d %s", r.status, r.raw)
	}
	if err := archive.Migrate(context.Background(), cc); err != nil {
		t.Fatal(err)
	}
	c := e.must(200, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "create-1")
	base := "/v1/subscriptions/" + c.body["id"].(string)
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM credit_ledger FINAL").Scan(&n); err != nil || n != 1 {
		t.Fatalf("archived entries after the retry: %d %v", n, err)
	}
	if err := conn.Exec(context.Background(), "DROP TABLE credit_ledger"); err != nil {
		t.Fatal(err)
	}
	r = e.do("POST", base+"/topups", admin, `{"amount":"300"}`, "Idempotency-Key", "t1")
	if code, _, msg := r.err(); r.status != 503 || code != "archive_unavailable" || !strings.Contains(msg, "stored (balance 400, seq 2)") {
		t.Fatalf("top-up with the archive failing: %d %s", r.status, r.raw)
	}
}

// doRaw sends body with exactly the Content-Type ct (none when empty).
func (e *env) doRaw(method, path, token, body, ct string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
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

// An event's over-long number is rejected without being echoed.
func TestPostEventsDoesNotEchoLongNumbers(t *testing.T) {
	rc := testenv.Redis(t)
	store, err := catalogstore.New(rc, testenv.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	w := ingest.NewWriters([]string{b.Addr()}, "usage-events", "usage-events-dlq")
	defer w.Close()
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{Catalog: store, Events: w, AdminTokens: []string{admin}})))
	defer hs.Close()
	e := &env{t: t, url: hs.URL}
	digits := strings.Repeat("7", 60000)
	r := e.do("POST", "/v1/events", admin, `{"events":[{"id":"e1","customer_id":"acme","event_name":"llm.call","timestamp":"2026-11-27T10:00:00Z","dimensions":{"tokens":`+digits+`}}]}`)
	if r.status != 400 || len(r.raw) > 1000 || strings.Contains(r.raw, strings.Repeat("7", 41)) {
		t.Fatalf("an event with a 60,000-digit number: %d, %d bytes: %.300s", r.status, len(r.raw), r.raw)
	}
}
