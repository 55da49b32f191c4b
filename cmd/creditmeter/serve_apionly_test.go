package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// serve --engine=false on a fresh database creates the archive tables, so a
// subscription's included credits are archived (it answered 503
// ledger_unavailable, the tables missing).
func TestServeAPIOnlyCreatesTheArchive(t *testing.T) {
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	c := testenv.Config(t)
	_, prefix := testenv.Keyspace(t)
	conn, cc := testenv.ClickHouse(t) // an empty database
	const token = "apionly-admin-token-0123456789abcdef"
	addr := "127.0.0.1:" + freePort(t)
	start(t, "serve", "--engine=false", "--http-addr", addr, "--kafka-brokers", b.Addr(), "--redis-addr", c.Redis.Addr,
		"--redis-key-prefix", prefix, "--clickhouse-addr", cc.Addr, "--clickhouse-database", cc.Database, "--admin-tokens", token)
	base := "http://" + addr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })
	post := func(path, body string) (int, string) {
		t.Helper()
		code, out := send(t, "POST", base+path, token, body)
		return code, string(out)
	}
	for _, r := range []struct{ path, body string }{
		{"/v1/currencies", `{"code":"AIT","name":"AI Tokens"}`},
		{"/v1/features", `{"id":"email","name":"Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`},
		{"/v1/plans", `{"id":"p","product":"ai","name":"P","type":"paid","billing_model":"prepaid","prepaid":{"credit_currency":"AIT",
		  "top_up_model":{"type":"flat_rate"},"currency_values":[{"currency":"USD","value":"1"}],
		  "consumption":[{"feature_id":"email","credits_per_unit":"1"}],"overage_policy":"unfunded"}}`},
		{"/v1/customers", `{"id":"acme","name":"Acme"}`},
		{"/v1/subscriptions", `{"customer_id":"acme","product":"ai","plan_id":"p","currency":"USD",
		  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"100","expiration":{"rule":"never"}},
		  "schedule":{"start":"now"}}`},
	} {
		if code, out := post(r.path, r.body); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", r.path, code, out)
		}
	}
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM credit_ledger FINAL WHERE kind = 'grant'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("archived grants: %d %v, want 1", n, err)
	}
}

// With ClickHouse unreachable at start, API-only serve still serves, says in
// /readyz that the archive is not ready, and stops cleanly.
func TestServeAPIOnlyWaitsForTheArchive(t *testing.T) {
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	c := testenv.Config(t)
	_, prefix := testenv.Keyspace(t)
	addr := "127.0.0.1:" + freePort(t)
	const admin = "apionly-admin-token-0123456789abcdef"
	start(t, "serve", "--engine=false", "--http-addr", addr, "--kafka-brokers", b.Addr(), "--redis-addr", c.Redis.Addr,
		"--redis-key-prefix", prefix, "--clickhouse-addr", "127.0.0.1:"+freePort(t), "--admin-tokens", admin)
	base := "http://" + addr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })
	req, _ := http.NewRequest(http.MethodGet, base+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+admin) // the reasons are for admins only
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "archive not ready: creating the archive tables") {
		t.Fatalf("/readyz with ClickHouse down: %d %s", res.StatusCode, body)
	}
}
