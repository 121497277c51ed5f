package status

import (
	"embed"
	"io/fs"
	"net/http"
)

// ui is the status page: plain HTML, CSS and JavaScript, embedded so that it needs no
// build step, no CDN and no network beyond the status listener (it works air-gapped).
// The script builds the DOM with textContent only: repository names, refs and failure
// messages come from webhooks and registries and are never parsed as HTML.
//
//go:embed ui
var ui embed.FS

// pageCSP allows the page its own script, style and API, and nothing else: no inline
// script (what an injected string could become), no other origin, no framing.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// registerPage serves the page: GET / (index.html) and GET /ui/ (its script and style).
// They hold no data and are served without the token; the API they read requires it.
func registerPage(mux *http.ServeMux) {
	sub, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	secure := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd.Set("Content-Security-Policy", pageCSP)
			hd.Set("X-Content-Type-Options", "nosniff")
			hd.Set("X-Frame-Options", "DENY")
			hd.Set("Referrer-Policy", "no-referrer")
			hd.Set("Cache-Control", "no-cache")
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})))
	mux.Handle("GET /ui/", secure(http.StripPrefix("/ui/", files)))
}
