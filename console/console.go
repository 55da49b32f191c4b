// Package console is creditmeter's web console for billing admins and
// customers: static HTML, CSS and vanilla JavaScript, embedded in the binary,
// that call the JSON API under /v1 with the bearer token the user signs in
// with (kept in the tab's sessionStorage). The API stays the only path to the
// data; the console has no server-side state and no build step.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// static holds the page and its ES modules (pages/ too: a directory embeds
// its subdirectories).
//
//go:embed static
var static embed.FS

// types are fixed here rather than read from the system's MIME database,
// which differs between machines.
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the console. Mount it at /console/ on the same origin as the
// API (the pages call <prefix>/v1, where <prefix> is what precedes /console/):
//
//	mux.Handle("/console/", console.Handler())
//
// It answers /console (redirect), /console/ (the page) and the page's assets
// (static/, the ES modules in pages/ included), and works behind
// http.StripPrefix too: an asset is looked up by the end of the path.
func Handler() http.Handler {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct, ok := types[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		assets[strings.TrimPrefix(p, "static/")] = asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("console: embedded assets: " + err.Error()) // impossible: embed checked them at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := r.URL.Path
		if p == "/console" {
			http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
			return
		}
		name, a, ok := lookup(assets, p)
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// Only this origin's scripts, styles and API; no inline script.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}

// lookup finds the asset a request path ends with: "/console/pages/login.js"
// is pages/login.js whatever precedes it (the mount, a proxy's prefix, or
// nothing behind http.StripPrefix), so the modules' relative imports resolve
// under any prefix. A path ending in "/" is the page.
func lookup(assets map[string]asset, p string) (string, asset, bool) {
	if p == "" || strings.HasSuffix(p, "/") {
		a, ok := assets["index.html"]
		return "index.html", a, ok
	}
	for rest := p; ; {
		if a, ok := assets[rest]; ok {
			return path.Base(rest), a, true
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "", asset{}, false
		}
		rest = rest[i+1:]
	}
}
