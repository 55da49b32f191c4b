package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/console"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesTheEmbeddedPages(t *testing.T) {
	h := console.Handler()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/console/", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/console/index.html", "text/html; charset=utf-8", `<main id="app"`},
		{"/console/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
		{"/console/style.css", "text/css; charset=utf-8", ":root"},
	} {
		res := get(t, h, "GET", tc.path)
		b := body(t, res)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != tc.ctype || !strings.Contains(b, tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.contains, strings.Contains(b, tc.contains))
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: content security policy %q", tc.path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("ETag") == "" {
			t.Errorf("GET %s: headers %v", tc.path, res.Header)
		}
		// A revalidation with the ETag is a 304.
		if r2 := get(t, h, "GET", tc.path, "If-None-Match", res.Header.Get("ETag")); r2.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d", tc.path, r2.StatusCode)
		}
	}
	if res := get(t, h, "GET", "/console"); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	for _, p := range []string{"/console/nope.js", "/console/static/app.js.map", "/console/../go.mod"} {
		if res := get(t, h, "GET", p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
	if res := get(t, h, "POST", "/console/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", res.StatusCode)
	}
	// Behind http.StripPrefix the same assets are served.
	sp := http.StripPrefix("/console", h)
	if res := get(t, sp, "GET", "/console/app.js"); res.StatusCode != 200 {
		t.Errorf("behind StripPrefix: %d", res.StatusCode)
	}
	if res := get(t, sp, "GET", "/console/"); res.StatusCode != 200 || !strings.Contains(body(t, res), "<main") {
		t.Errorf("index behind StripPrefix: %d", res.StatusCode)
	}
}

// TestAssetsFollowTheRules checks the sources for what the content security
// policy and the standards forbid: inline script or style, assets from
// another origin, and floating-point arithmetic on amounts.
func TestAssetsFollowTheRules(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	html, js, css := read("index.html"), read("app.js"), read("style.css")
	if regexp.MustCompile(`<script[^>]*>[^<]+</script>`).MatchString(html) || strings.Contains(html, " style=") || regexp.MustCompile(` on[a-z]+=`).MatchString(html) {
		t.Error("index.html has inline script, style or event handler attributes, which the CSP blocks")
	}
	for name, src := range map[string]string{"index.html": html, "app.js": js, "style.css": css} {
		for _, u := range regexp.MustCompile(`https?://[^\s'")]+`).FindAllString(src, -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s refers to another origin: %s", name, u)
			}
		}
		if strings.Contains(src, "@import") || strings.Contains(src, "url(") {
			t.Errorf("%s loads a resource from CSS", name)
		}
	}
	for _, bad := range []string{"parseFloat(", "toFixed(", "innerHTML", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	// Number() only for chart geometry and list indexes.
	for _, m := range regexp.MustCompile(`Number\(([^)]*)\)`).FindAllStringSubmatch(js, -1) {
		if !strings.HasPrefix(m[1], "fromBig(") && m[1] != "m[1]" {
			t.Errorf("app.js converts %s to a floating-point number", m[0])
		}
	}
}
