package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/webhook"
)

// TestWebhooksAPI registers an endpoint through the API, makes the account
// events happen through the API (subscription, low-balance crossing down,
// top-up and crossing up, exhaustion) and watches a real receiver get each
// once, signed, after two refusals, as the delivery log reports.
func TestWebhooksAPI(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	conn, cc := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := archive.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	store, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := balance.New(rc, balance.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := webhook.NewStore(rc, prefix, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc := &accounts.Accounts{Store: bs, Archive: archive.NewWriter(conn),
		Observer: &webhook.Notifier{Emitter: hooks, Notes: bs, Ledger: bs, Customer: func(ctx context.Context, sub string) (string, error) {
			s, err := store.Subscription(ctx, sub)
			if err != nil {
				return "", err
			}
			return s.CustomerID, nil
		}}}
	srv := api.NewServer(api.Options{Catalog: store, Ledger: acc, Balances: acc, AdminTokens: []string{admin}, Webhooks: hooks})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}

	var mu sync.Mutex
	var secret string
	tries := map[string]int{}
	got := map[string][]webhook.Event{} // accepted, by type
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify(secret, r.Header.Get("Creditmeter-Signature"), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("Creditmeter-Event-Id")
		if tries[id]++; tries[id] <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil || ev.ID != id || ev.Type != r.Header.Get("Creditmeter-Event-Type") {
			t.Errorf("receiver: body %s (%v) does not match its headers", body, err)
		}
		got[ev.Type] = append(got[ev.Type], ev)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rcv.Close)

	e.seed()
	if c, _, _ := e.must(400, "POST", "/v1/webhooks", admin, `{"url":"ftp://x","events":["topup.created"]}`).err(); c != "invalid" {
		t.Errorf("bad url: code %q", c)
	}
	if _, f, _ := e.must(400, "POST", "/v1/webhooks", admin, `{"url":"https://x.example","events":["nope"]}`).err(); f != "events" {
		t.Errorf("unknown event type: field %q", f)
	}
	ep := e.must(201, "POST", "/v1/webhooks", admin, `{"url":"`+rcv.URL+`/hooks","events":["balance.low","balance.recovered","balance.exhausted","topup.created","subscription.created"],"description":"billing"}`)
	id, _ := ep.body["id"].(string)
	mu.Lock()
	secret, _ = ep.body["secret"].(string)
	mu.Unlock()
	if id == "" || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("created endpoint: %s", ep.raw)
	}
	if g := e.must(200, "GET", "/v1/webhooks/"+id, admin, ""); g.body["secret"] != nil || g.body["url"] != rcv.URL+"/hooks" {
		t.Errorf("GET shows %s (no secret wanted)", g.raw)
	}

	sub := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "wh-1")
	e.must(200, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "wh-1") // replay: same event
	base := "/v1/subscriptions/" + sub.body["id"].(string)
	// 100 included, threshold 50: 100 → 40 (low) → 340 (recovered) → 0 (low, exhausted).
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-60","reason":"test","actor":"t"}`, "Idempotency-Key", "a-1")
	e.must(201, "POST", base+"/topups", admin, `{"amount":"300"}`, "Idempotency-Key", "t-1")
	e.must(200, "POST", base+"/topups", admin, `{"amount":"300"}`, "Idempotency-Key", "t-1")
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"-340","reason":"test","actor":"t"}`, "Idempotency-Key", "a-2")

	d, err := webhook.NewDispatcher(hooks, webhook.DispatcherOptions{Schedule: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond},
		Poll: 5 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	go d.Run(dctx)
	want := map[string]int{"subscription.created": 1, "balance.low": 2, "balance.recovered": 1, "topup.created": 1, "balance.exhausted": 1}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, evs := range got {
			n += len(evs)
		}
		mu.Unlock()
		if n >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	stop()
	mu.Lock()
	counts := map[string]int{}
	for typ, evs := range got {
		counts[typ] = len(evs)
	}
	if top := got["topup.created"]; len(top) == 1 {
		if dd := top[0].Data; dd.Amount != "300" || dd.Charge != "12" || dd.Currency != "USD" || dd.Customer != "acme" || dd.Balance != "340" {
			t.Errorf("topup.created data %+v", dd)
		}
	}
	mu.Unlock()
	if !equalCounts(counts, want) {
		t.Fatalf("events accepted %v, want %v", counts, want)
	}
	log := e.must(200, "GET", "/v1/webhooks/"+id+"/deliveries?limit=20", admin, "")
	var page struct {
		Data []webhook.Delivery `json:"data"`
	}
	if err := json.Unmarshal([]byte(log.raw), &page); err != nil || len(page.Data) != 6 {
		t.Fatalf("delivery log (%v): %s", err, log.raw)
	}
	for _, dl := range page.Data {
		codes := []int{}
		for _, a := range dl.History {
			codes = append(codes, a.StatusCode)
		}
		sort.Ints(codes)
		if dl.Status != "delivered" || dl.Attempts != 3 || len(codes) != 3 || codes[0] != 200 || codes[2] != 503 {
			t.Errorf("delivery %+v (codes %v), want delivered at the third attempt", dl, codes)
		}
	}
	e.must(400, "GET", "/v1/webhooks/"+id+"/deliveries?limit=0", admin, "")
	if l := e.must(200, "GET", "/v1/webhooks", admin, ""); !strings.Contains(l.raw, id) || strings.Contains(l.raw, "whsec_") {
		t.Errorf("list: %s", l.raw)
	}
	e.must(204, "DELETE", "/v1/webhooks/"+id, admin, "")
	e.must(404, "DELETE", "/v1/webhooks/"+id, admin, "")
	e.must(404, "GET", "/v1/webhooks/"+id+"/deliveries", admin, "")
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Without a webhook store the routes answer 503, and a customer token 403.
func TestWebhooksUnconfigured(t *testing.T) {
	e := newEnv(t)
	e.must(503, "GET", "/v1/webhooks", admin, "")
	tok := ""
	e.seed()
	tok = e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	e.must(403, "GET", "/v1/webhooks", tok, "")
}
