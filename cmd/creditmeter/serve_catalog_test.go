package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// serve wires the catalog API to Redis with the configured admin tokens, and
// the catalog survives a restart.
func TestServeCatalogAPI(t *testing.T) {
	b := testenv.Broker(t, 1, "usage-events", "usage-events-dlq")
	c := testenv.Config(t)
	rc, prefix := testenv.Keyspace(t)
	const token = "serve-admin-token-0123456789abcdef"
	call := func(base, method, path, tok, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(out)
	}
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		addr := "127.0.0.1:" + freePort(t)
		start(t, "serve", "--http-addr", addr, "--metrics-addr", "127.0.0.1:"+freePort(t), "--kafka-brokers", b.Addr(), "--redis-addr", c.Redis.Addr,
			"--clickhouse-addr", c.ClickHouse.Addr, "--admin-tokens", token, "--redis-key-prefix", prefix)
		base := "http://" + addr
		eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })
		if code, body := call(base, "POST", "/v1/currencies", token, `{"code":"AIT","name":"AI Tokens"}`); code != want {
			t.Fatalf("run %d: create currency: %d %s, want %d", i, code, body, want)
		}
		if code, body := call(base, "GET", "/v1/currencies/AIT", token, ""); code != 200 || !strings.Contains(body, `"AI Tokens"`) {
			t.Errorf("run %d: get currency: %d %s", i, code, body)
		}
		if code, _ := call(base, "GET", "/v1/currencies", "wrong-token-0123456789", ""); code != http.StatusUnauthorized {
			t.Errorf("run %d: wrong token: %d", i, code)
		}
	}
	if n, _ := rc.Exists(context.Background(), prefix+"{catalog}:currencies").Result(); n != 1 {
		t.Errorf("catalog not under the configured prefix %q", prefix)
	}
}
