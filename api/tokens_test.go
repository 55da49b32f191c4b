package api_test

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func TestCustomerTokensListExpireRevoke(t *testing.T) {
	e := newEnv(t)
	e.seed()
	t1 := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body
	t2 := e.must(201, "POST", "/v1/customers/acme/tokens", admin, `{"expires_in":"PT1H"}`).body
	tok1, tok2 := t1["token"].(string), t2["token"].(string)
	if exp, err := time.Parse(time.RFC3339, t2["expires_at"].(string)); err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > time.Hour {
		t.Errorf("expires_in PT1H: %v", t2)
	}
	if t1["id"] == "" || t1["prefix"] != tok1[:8] || t1["customer_id"] != "acme" || t1["expires_at"] != nil {
		t.Errorf("issued token: %v", t1)
	}
	for body, field := range map[string]string{
		`{"expires_at":"2020-01-01T00:00:00Z"}`:                     "expires_at",
		`{"expires_in":"soon"}`:                                     "expires_in",
		`{"expires_in":"PT1H","expires_at":"2099-01-01T00:00:00Z"}`: "expires_in",
		`{"expires_in":"P20Y"}`:                                     "expires_at",
	} {
		if _, f, _ := e.must(400, "POST", "/v1/customers/acme/tokens", admin, body).err(); f != field {
			t.Errorf("%s: field %q, want %q", body, f, field)
		}
	}
	globex := e.must(201, "POST", "/v1/customers/globex/tokens", admin, "").body["token"].(string)

	// A customer lists its own tokens, never a secret; not another's.
	l := e.must(200, "GET", "/v1/customers/acme/tokens", tok1, "")
	if d := l.body["data"].([]any); len(d) != 2 || strings.Contains(l.raw, tok1[8:]) || strings.Contains(l.raw, tok2[8:]) {
		t.Fatalf("own tokens: %s", l.raw)
	}
	if !strings.Contains(l.raw, `"last_used_at"`) {
		t.Errorf("the token in use shows no last use: %s", l.raw)
	}
	e.must(403, "GET", "/v1/customers/globex/tokens", tok1, "")
	e.must(200, "GET", "/v1/customers/globex/tokens", admin, "")
	e.must(404, "GET", "/v1/customers/nobody/tokens", admin, "")

	// Revocation: by the customer itself or an admin, at once on this node.
	e.must(403, "DELETE", "/v1/customers/globex/tokens/"+t1["id"].(string), tok1, "")
	e.must(404, "DELETE", "/v1/customers/acme/tokens/tok_0000000000000000", admin, "")
	e.must(200, "GET", "/v1/customers/acme", tok2, "")
	e.must(204, "DELETE", "/v1/customers/acme/tokens/"+t2["id"].(string), tok1, "")
	e.must(401, "GET", "/v1/customers/acme", tok2, "")
	e.must(404, "DELETE", "/v1/customers/acme/tokens/"+t2["id"].(string), admin, "")
	e.must(204, "DELETE", "/v1/customers/acme/tokens/"+t1["id"].(string), admin, "")
	e.must(401, "GET", "/v1/customers/acme", tok1, "")
	e.must(200, "GET", "/v1/customers/globex", globex, "")

	// Expiry.
	short := e.must(201, "POST", "/v1/customers/acme/tokens", admin, `{"expires_in":"PT1S"}`).body["token"].(string)
	time.Sleep(1100 * time.Millisecond)
	if code, _, _ := e.must(401, "GET", "/v1/customers/acme", short, "").err(); code != "token_expired" {
		t.Errorf("expired token: code %q", code)
	}
}

// TestRevokedTokenRefusedByAnotherServerWithinASecond: two API servers on one
// Redis keyspace, as two serve nodes.
func TestRevokedTokenRefusedByAnotherServerWithinASecond(t *testing.T) {
	a := newEnv(t)
	a.seed()
	b := a.sibling()
	tok := a.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body
	secret := tok["token"].(string)
	b.must(200, "GET", "/v1/customers/acme", secret, "") // cached on b
	start := time.Now()
	a.must(204, "DELETE", "/v1/customers/acme/tokens/"+tok["id"].(string), admin, "")
	for b.do("GET", "/v1/customers/acme", secret, "").status != 401 {
		if time.Since(start) > 1200*time.Millisecond {
			t.Fatalf("the other server still accepts the revoked token after %v", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("refused by the other server after %v", time.Since(start).Round(time.Millisecond))
}

// sibling is a second API server on e's catalog keyspace.
func (e *env) sibling() *env {
	store, err := catalogstore.New(e.cat.Client(), e.cat.Prefix())
	if err != nil {
		e.t.Fatal(err)
	}
	srv := api.NewServer(api.Options{Catalog: store, Ledger: &fakeLedger{}, AdminTokens: []string{admin}})
	hs := httptest.NewServer(validated(e.t, srv))
	e.t.Cleanup(hs.Close)
	return &env{t: e.t, url: hs.URL, srv: srv, cat: store}
}

func TestAdjustmentActorIsTheTokenNameAndReasonsArePublicOnlyWhenMarked(t *testing.T) {
	const alice = "alice:alice-secret-0123456789"
	e, _, _ := newBalanceEnv(t, alice)
	e.seed()
	id := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "c").body["id"].(string)
	base := "/v1/subscriptions/" + id
	tok := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body["token"].(string)
	aliceTok := strings.TrimPrefix(alice, "alice:")

	e.must(201, "POST", base+"/adjustments", aliceTok, `{"amount":"-5","reason":"internal: duplicate run","actor":"ops-ticket-12"}`, "Idempotency-Key", "a1")
	e.must(201, "POST", base+"/adjustments", aliceTok, `{"amount":"10","reason":"Sorry for the outage","public":true,"note":"INC-7"}`, "Idempotency-Key", "a2")
	e.must(201, "POST", base+"/adjustments", admin, `{"amount":"1","reason":"rounding"}`, "Idempotency-Key", "a3")
	if _, f, _ := e.must(400, "POST", base+"/adjustments", admin, `{"amount":"1","reason":"r","actor":"x","note":"y"}`, "Idempotency-Key", "a4").err(); f != "actor" {
		t.Errorf("actor and note: field %q", f)
	}

	adjustments := func(token string) ([]map[string]any, string) {
		r := e.must(200, "GET", base+"/ledger", token, "")
		var out []map[string]any
		for _, x := range r.body["entries"].([]any) {
			if en := x.(map[string]any); en["kind"] == "adjustment" {
				out = append(out, en)
			}
		}
		if len(out) != 3 {
			t.Fatalf("adjustments in the ledger: %s", r.raw)
		}
		return out, r.raw
	}
	adm, _ := adjustments(admin)
	if a := adm[0]; a["actor"] != "alice" || a["note"] != "ops-ticket-12" || a["reason"] != "internal: duplicate run" || a["public"] != nil {
		t.Errorf("admin view of a private adjustment: %v", a)
	}
	if a := adm[1]; a["actor"] != "alice" || a["note"] != "INC-7" || a["public"] != true {
		t.Errorf("admin view of a public adjustment: %v", a)
	}
	if a := adm[2]; a["actor"] != "admin" || a["note"] != nil {
		t.Errorf("unnamed admin token: %v", a)
	}
	cust, raw := adjustments(tok)
	if cust[0]["reason"] != "balance adjustment" || cust[1]["reason"] != "Sorry for the outage" || cust[2]["reason"] != "balance adjustment" {
		t.Errorf("customer view of reasons: %s", raw)
	}
	for _, hidden := range []string{"alice", "ops-ticket", "internal: duplicate", "INC-7", "rounding", `"actor"`, `"note"`, `"public"`} {
		if strings.Contains(raw, hidden) {
			t.Errorf("the customer's ledger shows %q: %s", hidden, raw)
		}
	}
}

// TestRevocationIsAuditedWithTheAdminName: a DELETE is a write, audited like
// POST and PUT, naming the token revoked and the admin token's name.
func TestRevocationIsAuditedWithTheAdminName(t *testing.T) {
	const ops = "ops:ops-secret-0123456789abcdef"
	opsTok := strings.TrimPrefix(ops, "ops:")
	rc, prefix := testenv.Keyspace(t)
	store, err := catalogstore.New(rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv := api.NewServer(api.Options{Catalog: store, Ledger: &fakeLedger{}, AdminTokens: []string{admin, ops},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	hs := httptest.NewServer(validated(t, srv))
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv, cat: store}
	e.seed()
	t1 := e.must(201, "POST", "/v1/customers/acme/tokens", opsTok, "").body
	t2 := e.must(201, "POST", "/v1/customers/acme/tokens", admin, "").body
	e.must(204, "DELETE", "/v1/customers/acme/tokens/"+t1["id"].(string), opsTok, "")
	e.must(204, "DELETE", "/v1/customers/acme/tokens/"+t2["id"].(string), t2["token"].(string), "")
	want := []map[string]any{
		{"route": "POST /v1/customers/{id}/tokens", "resource": "acme", "principal": "admin", "admin": "ops"},
		{"route": "DELETE /v1/customers/{id}/tokens/{token_id}", "resource": t1["id"], "status": 204.0, "principal": "admin", "admin": "ops"},
		{"route": "DELETE /v1/customers/{id}/tokens/{token_id}", "resource": t2["id"], "status": 204.0, "principal": "customer", "customer": "acme"},
	}
	lines := logs.lines(t)
next:
	for _, w := range want {
		for _, l := range lines {
			match := l["msg"] == "audit"
			for k, v := range w {
				match = match && l[k] == v
			}
			if match {
				continue next
			}
		}
		t.Errorf("no audit line %v", w)
	}
}
