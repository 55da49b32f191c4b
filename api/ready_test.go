package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/api"
)

// /readyz is public, but why a service is not ready (internal addresses,
// driver errors) is for admins only.
func TestReadyzDetailsForAdminsOnly(t *testing.T) {
	const detail = "redis 10.1.2.3:6379: connection refused"
	hs := httptest.NewServer(validated(t, api.NewServer(api.Options{AdminTokens: []string{admin},
		Ready: func(context.Context) error { return errors.New(detail) }})))
	defer hs.Close()
	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", hs.URL+"/readyz", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tok := range []string{"", "not-an-admin-token-0123456789"} {
		if code, body := get(tok); code != http.StatusServiceUnavailable || strings.Contains(body, "10.1.2.3") || !strings.Contains(body, `"not_ready"`) {
			t.Errorf("token %q: %d %s, want 503 not_ready without the detail", tok, code, body)
		}
	}
	if code, body := get(admin); code != http.StatusServiceUnavailable || !strings.Contains(body, detail) {
		t.Errorf("admin: %d %s, want 503 with %q", code, body, detail)
	}
	// /metrics is served by serve on its own listener, never by the API.
	req, _ := http.NewRequest("GET", hs.URL+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the API: %d, want 404", res.StatusCode)
	}
}
