package api_test

import (
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/webhook"
)

const paymentSecret = "psec_test"

// payPlan is the seed plan with payment confirmation, pending top-ups
// expiring after a minute.
var payPlan = strings.Replace(strings.Replace(planJSON, `"id":"ai-prepaid"`, `"id":"ai-pay"`, 1),
	`"overage_policy":"unfunded"`, `"overage_policy":"unfunded","payment":{"confirmation_required":true,"expires_in":"1m"}`, 1)

func TestPendingTopUpConfirmCallbackAndExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	st := apptest.StoresWith(t, app.Options{Balance: balance.Options{Now: clock}})
	srv := api.NewServer(api.Options{Catalog: st.Catalog, Ledger: st.Accounts, Balances: st.Accounts, Reports: archive.Reports{Conn: st.Conn},
		AdminTokens: []string{admin}, PaymentSecret: paymentSecret})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv}
	e.seed()
	e.must(201, "POST", "/v1/plans", admin, payPlan)
	sub := strings.Replace(seedSub, `"plan_id":"ai-prepaid"`, `"plan_id":"ai-pay"`, 1)
	id := e.must(201, "POST", "/v1/subscriptions", admin, sub, "Idempotency-Key", "c").body["id"].(string)
	base := "/v1/subscriptions/" + id
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)

	// pending: no credits yet; the same key answers the same top-up
	p := e.must(202, "POST", base+"/topups", tok, `{"amount":"500"}`, "Idempotency-Key", "buy-1")
	if p.body["status"] != "pending" || p.body["charge"] != "20" || p.body["currency"] != "USD" {
		t.Fatalf("pending top-up: %s", p.raw)
	}
	tp := p.body["id"].(string)
	if again := e.must(200, "POST", base+"/topups", tok, `{"amount":"500"}`, "Idempotency-Key", "buy-1"); again.body["id"] != tp || again.body["replayed"] != true {
		t.Fatalf("replay: %s", again.raw)
	}
	if b := e.must(200, "GET", base+"/balance", tok, ""); b.body["total"] != "100" {
		t.Fatalf("credits before payment: %s", b.raw)
	}
	if g := e.must(200, "GET", base+"/topups/"+tp, tok, ""); g.body["status"] != "pending" {
		t.Fatalf("get: %s", g.raw)
	}
	// only an admin confirms; then the credits are there, once
	if r := e.do("POST", base+"/topups/"+tp+"/confirm", tok, ""); r.status != 403 {
		t.Fatalf("a customer confirmed: %d %s", r.status, r.raw)
	}
	c := e.must(200, "POST", base+"/topups/"+tp+"/confirm", admin, "")
	if c.body["status"] != "confirmed" || c.body["balance"] != "600" || c.body["replayed"] != false || c.body["grant_id"] == nil {
		t.Fatalf("confirm: %s", c.raw)
	}
	if c2 := e.must(200, "POST", base+"/topups/"+tp+"/confirm", admin, ""); c2.body["replayed"] != true || c2.body["balance"] != "600" || c2.body["seq"] != c.body["seq"] {
		t.Fatalf("confirm again: %s", c2.raw)
	}
	es := e.must(200, "GET", base+"/ledger", admin, "").body["entries"].([]any)
	if last := es[len(es)-1].(map[string]any); last["kind"] != "topup" || last["charge"] != "20" || last["amount"] != "500" {
		t.Fatalf("ledger: %v", es)
	}
	e.must(404, "POST", base+"/topups/tp_nothing/confirm", admin, "")

	// the provider's callback: a bad or stale signature is refused
	p2 := e.must(202, "POST", base+"/topups", tok, `{"amount":"300"}`, "Idempotency-Key", "buy-2").body["id"].(string)
	body := `{"subscription_id":"` + id + `","topup_id":"` + p2 + `","status":"failed","reason":"card declined"}`
	for _, sig := range []string{"", "t=1,v1=00", webhook.Sign("wrong", time.Now(), []byte(body)), webhook.Sign(paymentSecret, time.Now().Add(-time.Hour), []byte(body))} {
		r := e.do("POST", "/v1/payments/callback", "", body, "Creditmeter-Signature", sig)
		if code, _, _ := r.err(); r.status != 401 || code != "bad_signature" {
			t.Fatalf("signature %q: %d %s", sig, r.status, r.raw)
		}
	}
	f := e.must(200, "POST", "/v1/payments/callback", "", body, "Creditmeter-Signature", webhook.Sign(paymentSecret, time.Now(), []byte(body)))
	if f.body["status"] != "failed" || f.body["reason"] != "card declined" {
		t.Fatalf("failed payment: %s", f.raw)
	}
	if code, _, _ := e.must(409, "POST", base+"/topups/"+p2+"/confirm", admin, "").err(); code != "topup_failed" {
		t.Fatalf("confirming a failed top-up: %s", code)
	}
	p3 := e.must(202, "POST", base+"/topups", tok, `{"amount":"250"}`, "Idempotency-Key", "buy-3").body["id"].(string)
	body = `{"subscription_id":"` + id + `","topup_id":"` + p3 + `","status":"succeeded"}`
	ok := e.must(200, "POST", "/v1/payments/callback", "", body, "Creditmeter-Signature", webhook.Sign(paymentSecret, time.Now(), []byte(body)))
	if ok.body["status"] != "confirmed" || ok.body["balance"] != "850" {
		t.Fatalf("paid by callback: %s", ok.raw)
	}

	// expiry: an unpaid top-up ends after a minute and cannot be confirmed
	p4 := e.must(202, "POST", base+"/topups", tok, `{"amount":"250"}`, "Idempotency-Key", "buy-4").body["id"].(string)
	now.Add(time.Minute.Milliseconds())
	if g := e.must(200, "GET", base+"/topups/"+p4, admin, ""); g.body["status"] != "expired" || g.body["ended_at"] == nil {
		t.Fatalf("expired: %s", g.raw)
	}
	if code, _, _ := e.must(409, "POST", base+"/topups/"+p4+"/confirm", admin, "").err(); code != "topup_expired" {
		t.Fatalf("confirming an expired top-up: %s", code)
	}
	if b := e.must(200, "GET", base+"/balance", admin, ""); b.body["total"] != "850" {
		t.Fatalf("balance: %s", b.raw)
	}
}
