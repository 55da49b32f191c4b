package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
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
		{"/console/", "text/html; charset=utf-8", `<script type="module" src="main.js"></script>`},
		{"/console/index.html", "text/html; charset=utf-8", `<main id="app"`},
		{"/console/main.js", "text/javascript; charset=utf-8", "import"},
		{"/console/session.js", "text/javascript; charset=utf-8", "sessionStorage"},
		{"/console/pages/subscription.js", "text/javascript; charset=utf-8", "export"},
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
	for _, p := range []string{"/console/nope.js", "/console/static/main.js.map", "/console/../go.mod", "/console/subscription.js", "/console/nope/subscription.js"} {
		if res := get(t, h, "GET", p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
	if res := get(t, h, "POST", "/console/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", res.StatusCode)
	}
	// Behind http.StripPrefix the same assets are served.
	sp := http.StripPrefix("/console", h)
	for _, p := range []string{"/console/main.js", "/console/pages/login.js"} {
		if res := get(t, sp, "GET", p); res.StatusCode != 200 {
			t.Errorf("%s behind StripPrefix: %d", p, res.StatusCode)
		}
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
	html, css := read("index.html"), read("style.css")
	scripts := map[string]string{}
	for name, src := range modules(t) {
		scripts[name] = src
	}
	if regexp.MustCompile(`<script[^>]*>[^<]+</script>`).MatchString(html) || strings.Contains(html, " style=") || regexp.MustCompile(` on[a-z]+=`).MatchString(html) {
		t.Error("index.html has inline script, style or event handler attributes, which the CSP blocks")
	}
	all := map[string]string{"index.html": html, "style.css": css}
	for name, src := range scripts {
		all[name] = src
	}
	for name, src := range all {
		for _, u := range regexp.MustCompile(`https?://[^\s'")]+`).FindAllString(src, -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s refers to another origin: %s", name, u)
			}
		}
		if strings.Contains(src, "@import") || strings.Contains(src, "url(") {
			t.Errorf("%s loads a resource from CSS", name)
		}
	}
	for name, js := range scripts {
		for _, bad := range []string{"parseFloat(", "toFixed(", "innerHTML", "eval(", "new Function"} {
			if strings.Contains(js, bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
		// Number() only for chart geometry and list indexes.
		for _, m := range regexp.MustCompile(`Number\(([^)]*)\)`).FindAllStringSubmatch(js, -1) {
			if !strings.HasPrefix(m[1], "fromBig(") && m[1] != "m[1]" {
				t.Errorf("%s converts %s to a floating-point number", name, m[0])
			}
		}
	}
}

// modules are the console's JavaScript sources by path under static/.
func modules(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(os.DirFS("static"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".js" {
			return err
		}
		b, err := os.ReadFile("static/" + p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestModulesImportWhatTheyExport follows the ES module graph from the page's
// entry without a browser: every import names a module the handler serves
// as JavaScript (a module served as anything else is refused) and a name
// that module exports, and every module is reached from main.js.
func TestModulesImportWhatTheyExport(t *testing.T) {
	h := console.Handler()
	mods := modules(t)
	html, err := os.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`<script type="module" src="main.js"></script>`).Match(html) || strings.Contains(string(html), "<script src=") {
		t.Errorf("index.html does not load main.js as its only script, a module")
	}
	importRE := regexp.MustCompile(`(?m)^import\s*(?:\{([^}]*)\}\s*from\s*)?'([^']+)';`)
	exportRE := regexp.MustCompile(`(?m)^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([A-Za-z_$][\w$]*)`)
	exports := map[string]map[string]bool{}
	for name, src := range mods {
		exports[name] = map[string]bool{}
		for _, m := range exportRE.FindAllStringSubmatch(src, -1) {
			exports[name][m[1]] = true
		}
	}
	reached := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if reached[name] {
			return
		}
		reached[name] = true
		for _, m := range importRE.FindAllStringSubmatch(mods[name], -1) {
			spec := m[2]
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: only relative paths resolve the same behind any prefix", name, spec)
				continue
			}
			dep := path.Join(path.Dir(name), spec)
			if _, ok := mods[dep]; !ok {
				t.Errorf("%s imports %s: no such module", name, dep)
				continue
			}
			res := get(t, h, "GET", "/console/"+dep)
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
				t.Errorf("GET /console/%s: %d %q", dep, res.StatusCode, res.Header.Get("Content-Type"))
			}
			for _, n := range strings.Split(m[1], ",") {
				if n = strings.TrimSpace(strings.Split(strings.TrimSpace(n), " as ")[0]); n != "" && !exports[dep][n] {
					t.Errorf("%s imports %s from %s, which does not export it", name, n, dep)
				}
			}
			visit(dep)
		}
	}
	if _, ok := mods["main.js"]; !ok {
		t.Fatal("no static/main.js")
	}
	visit("main.js")
	for name := range mods {
		if !reached[name] {
			t.Errorf("%s is not imported by main.js or its imports", name)
		}
	}
}
