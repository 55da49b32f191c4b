package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

const (
	aitJSON   = `{"code":"AIT","name":"AI Tokens","symbol":"AIT"}`
	emailJSON = `{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`
	planJSON  = `{"id":"ai-prepaid","product":"ai-agents","name":"AI Agents Prepaid","type":"paid","billing_model":"prepaid",
	  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},
	    "currency_values":[{"currency":"USD","value":"1.00"}],
	    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],"overage_policy":"unfunded"}}`
	subJSON = `{"customer_id":"acme","product":"ai-agents","plan_id":"ai-prepaid","currency":"USD","credit_value":"0.04",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"100","expiration":{"rule":"never"}},
	  "schedule":{"start":"now"}}`
)

// seed makes the catalog, the customer acme and its subscription through
// the API, and returns the subscription's id.
func (s *stack) seed(t *testing.T) string {
	t.Helper()
	s.call(t, "POST", "/v1/currencies", aitJSON, 201)
	s.call(t, "POST", "/v1/features", emailJSON, 201)
	s.call(t, "POST", "/v1/plans", planJSON, 201)
	s.call(t, "POST", "/v1/customers", `{"id":"acme","name":"Acme Inc"}`, 201)
	sub := s.call(t, "POST", "/v1/subscriptions", subJSON, 201)
	id, _ := sub["id"].(string)
	if id == "" {
		t.Fatalf("subscription: %v", sub)
	}
	return id
}

// status is the HTTP status of a GET with bearer token tok.
func (s *stack) status(t *testing.T, tok, path string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func (b *browser) signIn(url, tok, customer string) {
	b.t.Helper()
	b.open(url + "/console/#/login")
	b.waitText("h1", "Sign in")
	b.fill("login-token", tok)
	if customer != "" {
		b.fill("login-customer", customer)
	}
	b.click(`#login-form button[type=submit]`)
	if customer != "" {
		b.waitText("h1", "My subscriptions")
	} else {
		b.waitText("h1", "Plans")
	}
}

// TestConsoleCustomerTokens: an admin issues customer tokens with and
// without an expiry (a bad one refused next to its field), sees them listed
// without their secrets, revokes one (refused by the API from then on);
// adjustments carry a note and a public flag, and the customer sees a
// public adjustment's reason and the generic one otherwise.
func TestConsoleCustomerTokens(t *testing.T) {
	s := newStack(t)
	subID := s.seed(t)
	b := newBrowser(t)
	b.signIn(s.url, admin, "")

	b.open(s.url + "/console/#/customers/acme")
	b.waitText("h1", "Acme Inc")
	b.waitText("#customer-tokens", "No tokens")
	if l := b.labelFor("token-expires-in"); !strings.Contains(l, "Expires after") {
		t.Errorf("the expiry field is labelled %q", l)
	}
	b.fill("token-expires-in", "30 days")
	b.click("#issue-token")
	b.waitNonEmpty("#token-expires-in-error")
	if b.exists("#customer-token") {
		t.Error("a refused token request shows a token")
	}
	b.fill("token-expires-in", "P30D")
	b.click("#issue-token")
	b.waitText("#token-out", "Customer token")
	tok1 := strings.TrimSpace(b.text("#customer-token"))
	if len(tok1) < 16 {
		b.fail("customer token %q", tok1)
	}
	if got := b.text("#token-expires-in-error"); got != "" {
		t.Errorf("stale expiry error %q", got)
	}
	expires := time.Now().UTC().Add(30 * 24 * time.Hour).Format("2006-01-02")
	b.waitText("#customer-tokens", tok1[:8])
	b.waitText("#customer-tokens", expires)
	if got := b.text("#customer-tokens"); strings.Contains(got, tok1) {
		t.Error("the token list shows a secret")
	}
	// A second token, never expiring, used once.
	b.fill("token-expires-in", "")
	b.click("#issue-token")
	b.waitText("#token-out", "Customer token")
	tok2 := strings.TrimSpace(b.text("#customer-token"))
	if tok2 == tok1 || len(tok2) < 16 {
		b.fail("second token %q", tok2)
	}
	b.waitText("#customer-tokens", tok2[:8])
	if n := s.status(t, tok2, "/v1/customers/acme/subscriptions"); n != 200 {
		t.Fatalf("the second token: %d", n)
	}
	b.open(s.url + "/console/#/plans")
	b.waitText("h1", "Plans")
	b.open(s.url + "/console/#/customers/acme")
	row2 := fmt.Sprintf(`#customer-tokens tr[data-prefix=%q]`, tok2[:8])
	row1 := fmt.Sprintf(`#customer-tokens tr[data-prefix=%q]`, tok1[:8])
	b.waitText(row2, "never")
	if got := b.text(row2 + " .last-used"); got == "" || got == "—" {
		t.Errorf("the used token's last use shows %q", got)
	}
	if got := b.text(row1 + " .last-used"); got != "—" {
		t.Errorf("the unused token's last use shows %q", got)
	}
	b.screenshot("customer-tokens")

	// Revoke the first: the button asks once more, then the API refuses it.
	b.click(row1 + " button.revoke")
	b.waitText(row1+" button.revoke", "Confirm revoke")
	if n := s.status(t, tok1, "/v1/customers/acme/subscriptions"); n != 200 {
		t.Fatalf("the first token before the confirmation: %d", n)
	}
	b.click(row1 + " button.revoke")
	b.waitText("#token-out", "Revoked")
	for deadline := time.Now().Add(5 * time.Second); b.exists(row1) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if b.exists(row1) {
		b.fail("the revoked token is still listed")
	}
	if !b.exists(row2) {
		t.Error("revoking one token removed the other from the list")
	}
	if n := s.status(t, tok1, "/v1/customers/acme/subscriptions"); n != 401 {
		t.Errorf("the revoked token: %d, want 401", n)
	}

	// Adjustments: a public one with a note, an internal one.
	b.open(s.url + "/console/#/subscriptions/" + subID)
	b.waitText("#bal-available", "100 AIT")
	if l := b.labelFor("adj-public"); !strings.Contains(l, "Show reason to customer") {
		t.Errorf("the public box is labelled %q", l)
	}
	b.fill("adj-amount", "10")
	b.fill("adj-reason", "Goodwill for the outage")
	b.fill("adj-note", "ticket 42")
	b.click("#adj-public")
	b.click("#adj-submit")
	b.waitText("#adj-result", "balance 110 AIT")
	if b.exists("#adj-public:checked") {
		t.Error("the public box stays ticked after the adjustment")
	}
	b.fill("adj-amount", "-5")
	b.fill("adj-reason", "Internal correction")
	b.fill("adj-note", "dup of ticket 41")
	b.click("#adj-submit")
	b.waitText("#adj-result", "balance 105 AIT")
	b.waitText("#ledger-body", "reason: Goodwill for the outage · by alice@example.com · note: ticket 42 · reason shown to the customer")
	b.waitText("#ledger-body", "reason: Internal correction · by alice@example.com · note: dup of ticket 41 · reason hidden from the customer")
	b.screenshot("adjustments-admin")
	b.noProblem()

	// The customer, with the token left.
	b.click(`#who button`)
	b.signIn(s.url, tok2, "acme")
	b.click(`#my-subscriptions a`)
	b.waitText("#bal-available", "105 AIT")
	b.waitText("#ledger-body", "reason: Goodwill for the outage")
	b.waitText("#ledger-body", "reason: balance adjustment")
	if got := b.text("#ledger-body"); strings.Contains(got, "Internal correction") || strings.Contains(got, "ticket") || strings.Contains(got, "alice") || strings.Contains(got, "hidden") {
		t.Errorf("the customer's ledger shows what is the admin's: %q", got)
	}
	b.screenshot("adjustments-customer")
	b.noProblem()

	// The customer's own tokens: listed with this session's marked, another
	// one revoked, then this session's own, which signs out.
	tok3, _ := s.call(t, "POST", "/v1/customers/acme/tokens", "", 201)["token"].(string)
	if len(tok3) < 16 {
		t.Fatalf("third token %q", tok3)
	}
	row3 := fmt.Sprintf(`#customer-tokens tr[data-prefix=%q]`, tok3[:8])
	b.click(`#nav a[href="#/my"]`)
	b.waitText("h1", "My subscriptions")
	b.waitText(row2, "this session")
	b.waitText(row3, "never")
	if b.exists(row1) {
		t.Error("the customer sees the revoked token")
	}
	if strings.Contains(b.text(row3), "this session") {
		t.Error("another token is marked as this session's")
	}
	b.screenshot("customer-own-tokens")
	b.click(row3 + " button.revoke")
	b.click(row3 + " button.revoke")
	b.waitText("#token-out", "Revoked")
	for deadline := time.Now().Add(5 * time.Second); b.exists(row3) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if b.exists(row3) {
		b.fail("the token the customer revoked is still listed")
	}
	if n := s.status(t, tok3, "/v1/customers/acme/subscriptions"); n != 401 {
		t.Errorf("the token the customer revoked: %d, want 401", n)
	}
	b.click(row2 + " button.revoke")
	b.waitText(row2+" button.revoke", "Confirm: revoke and sign out")
	b.click(row2 + " button.revoke")
	b.waitText("h1", "Sign in")
	b.waitText("#app", "this session's token was revoked")
	if n := s.status(t, tok2, "/v1/customers/acme/subscriptions"); n != 401 {
		t.Errorf("the session's own revoked token: %d, want 401", n)
	}
	b.noProblem()
	if u := s.unroutedCalls(); len(u) > 0 {
		t.Errorf("the console called routes the API does not have: %v", u)
	}
}

// TestConsoleDeadLettersAndWebhooks: the admin's dead-letter page (counts
// by reason, entries with reason, field, detail and position, a reason
// filter, the next page) over events the engine really dead-lettered, and
// the webhooks page: a refused registration, the secret shown once (and
// verifying the signature a real receiver got), the delivery log with a
// retried delivery, and deletion.
func TestConsoleDeadLettersAndWebhooks(t *testing.T) {
	s := newStack(t)
	s.call(t, "POST", "/v1/currencies", aitJSON, 201)
	s.call(t, "POST", "/v1/features", emailJSON, 201)
	s.call(t, "POST", "/v1/plans", planJSON, 201)
	s.call(t, "POST", "/v1/customers", `{"id":"acme","name":"Acme Inc"}`, 201)

	// 11 events of an unknown customer and one that is not JSON.
	var msgs []kafka.Message
	for i := range 11 {
		ev := rating.Event{ID: fmt.Sprint("ghost-", i), CustomerID: "ghost", Name: "email.sent", Timestamp: time.Now()}
		msgs = append(msgs, kafka.Message{Key: []byte("ghost"), Value: ingest.AppendJSON(nil, &ev)})
	}
	msgs = append(msgs, kafka.Message{Key: []byte("x"), Value: []byte("not json")})
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := s.events.PublishRaw(pctx, msgs...); err != nil {
		t.Fatal(err)
	}
	pcancel()
	for deadline := time.Now().Add(30 * time.Second); ; {
		page := s.call(t, "GET", "/v1/dead-letters", "", 200)
		if n, _ := page["total"].(float64); n >= 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %v", page)
		}
		time.Sleep(200 * time.Millisecond)
	}

	b := newBrowser(t)
	b.signIn(s.url, admin, "")
	b.click(`#nav a[href="#/dead-letters"]`)
	b.waitText("h1", "Dead letters")
	b.waitText(`#dl-counts [data-reason="unknown_customer"]`, "11")
	b.waitText(`#dl-counts [data-reason="malformed"]`, "1")
	b.waitText("#dl-total", "12 dead letters")
	b.waitText("#dead-letters tbody", "unknown_customer")
	b.waitText("#dead-letters tbody", "customer_id")
	b.waitText("#dead-letters tbody", "usage-events/0@")
	// Ten a page, then the next page holds the other two.
	b.fill("dl-limit", "10")
	b.waitText("#dl-shown", "1–10 of 12")
	if n := eval[int](b, `document.querySelectorAll('#dead-letters tbody tr').length`); n != 10 {
		t.Errorf("the first page shows %d rows, want 10", n)
	}
	b.click("#dl-next")
	b.waitText("#dl-shown", "11–12 of 12")
	if n := eval[int](b, `document.querySelectorAll('#dead-letters tbody tr').length`); n != 2 {
		t.Errorf("the second page shows %d rows, want 2", n)
	}
	if b.exists("#dl-next:not([disabled])") {
		t.Error("a next page is offered after the last")
	}
	b.screenshot("dead-letters-page-2")
	// The filter: only the malformed one.
	b.fill("dl-reason", "malformed")
	b.waitText("#dl-total", "1 dead letter")
	b.waitText("#dead-letters tbody", "malformed")
	if got := b.text("#dead-letters tbody"); strings.Contains(got, "unknown_customer") {
		t.Errorf("the malformed filter shows %q", got)
	}
	b.waitText(`#dl-counts [data-reason="unknown_customer"]`, "11") // counts cover every reason
	b.screenshot("dead-letters-malformed")
	// Since a time after them: none; a time before: all again.
	b.fill("dl-reason", "")
	b.fill("dl-since", time.Now().UTC().Add(time.Hour).Format("2006-01-02T15:04"))
	b.waitText("#dl-total", "0 dead letters")
	b.waitText("#dead-letters tbody", "No dead letters")
	b.fill("dl-since", time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04"))
	b.waitText("#dl-total", "12 dead letters")
	b.noProblem()

	// A receiver that refuses the first attempt of each delivery.
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	seen := map[string]bool{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get(webhook.HeaderDelivery)
		if !seen[id] {
			seen[id] = true
			w.WriteHeader(500)
			return
		}
		got, bodies = append(got, r), append(bodies, body)
		w.WriteHeader(204)
	}))
	t.Cleanup(recv.Close)

	b.click(`#nav a[href="#/webhooks"]`)
	b.waitText("h1", "Webhooks")
	b.waitText("#webhooks", "No endpoints")
	// Every event type the API knows is offered (ids as webhooks.js makes them: each run of other characters a "-").
	for _, typ := range webhook.Types {
		if id := "wh-ev-" + strings.NewReplacer(".", "-", "_", "-").Replace(typ); !b.exists("#"+id) || b.labelFor(id) != typ {
			t.Errorf("event type %s is not offered (#%s)", typ, id)
		}
	}
	b.fill("wh-url", recv.URL+"/hook")
	b.click("#wh-create")
	b.waitText("#wh-events-error", "at least one event type")
	b.fill("wh-url", "ftp://example.com/hook")
	b.click("#wh-ev-subscription-created")
	b.click("#wh-create")
	b.waitText("#wh-url-error", "http")
	if got := b.text("#wh-events-error"); got != "" {
		t.Errorf("stale events error %q", got)
	}
	b.fill("wh-url", recv.URL+"/hook")
	b.fill("wh-description", "billing backend")
	b.click("#wh-ev-topup-created")
	b.click("#wh-create")
	secret := strings.TrimSpace(b.waitNonEmpty("#wh-secret"))
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	b.waitText("#webhooks", recv.URL+"/hook")
	b.waitText("#webhooks", "subscription.created, topup.created")
	b.waitText("#webhooks", "billing backend")
	b.screenshot("webhook-registered")

	// An event: a new subscription. Its delivery is refused once, then
	// accepted, signed with the secret the page showed.
	s.call(t, "POST", "/v1/subscriptions", subJSON, 201)
	b.click(`#webhooks a.deliveries`)
	b.waitText("h1", "Webhook deliveries")
	b.waitText("#wh-deliveries", "subscription.created")
	b.waitText("#wh-deliveries", "delivered")
	b.waitText("#wh-deliveries", "500, 204")
	mu.Lock()
	if len(got) != 1 {
		t.Errorf("the receiver accepted %d deliveries, want 1", len(got))
	} else if err := webhook.Verify(secret, got[0].Header.Get(webhook.HeaderSignature), bodies[0], time.Now(), 5*time.Minute); err != nil {
		t.Errorf("the signature does not verify with the secret the page showed: %v", err)
	}
	mu.Unlock()
	b.screenshot("webhook-deliveries")

	// The secret was shown once; then the endpoint is deleted.
	b.click(`#nav a[href="#/webhooks"]`)
	b.waitText("#webhooks", recv.URL)
	if b.exists("#wh-secret") || strings.Contains(eval[string](b, `document.body.innerText`), secret) {
		t.Error("the secret is shown again")
	}
	list := s.call(t, "GET", "/v1/webhooks", "", 200)
	id, _ := list["data"].([]any)[0].(map[string]any)["id"].(string)
	b.click(`#webhooks button.delete`)
	b.waitText(`#webhooks button.delete`, "Confirm delete")
	b.click(`#webhooks button.delete`)
	b.waitText("#webhooks", "No endpoints")
	// Every event type the API knows is offered.
	for _, typ := range webhook.Types {
		if id := "wh-ev-" + strings.NewReplacer(".", "-", "_", "-").Replace(typ); !b.exists("#"+id) || b.labelFor(id) != typ {
			t.Errorf("event type %s is not offered (#%s)", typ, id)
		}
	}
	s.call(t, "GET", "/v1/webhooks/"+id, "", 404)
	b.noProblem()
	if u := s.unroutedCalls(); len(u) > 0 {
		t.Errorf("the console called routes the API does not have: %v", u)
	}
}
