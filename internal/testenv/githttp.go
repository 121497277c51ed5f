package testenv

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"sync/atomic"
	"testing"
)

// HTTPAccess is a GitServer's repositories served over git's smart HTTP protocol by the
// real `git http-backend`, behind a token check: the private-repository case BuildKit's
// GIT_AUTH_TOKEN secret is for.
type HTTPAccess struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// Authorized and Refused count the requests that carried the token and those that did
	// not (each answered 401).
	Authorized, Refused atomic.Int64
}

// URL is the http:// URL of repository NAME.git.
func (h *HTTPAccess) URL(name string) string { return "http://" + h.Host + "/" + name + ".git" }

// ServeHTTP serves the repositories under g.Root over smart HTTP on a loopback port until
// the test ends. Every request must authenticate with HTTP basic auth whose password is
// token, whatever the user name: BuildKit sends GIT_AUTH_TOKEN as "x-access-token:<token>",
// as GitHub and Gitea accept it.
func (g *GitServer) ServeHTTP(t testing.TB, token string) *HTTPAccess {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		Require(t, "git not on PATH (run `bash hack/buildkit.sh` to install it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for git over http: %v", err)
	}
	h := &HTTPAccess{Host: ln.Addr().String()}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + g.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			// The repositories may belong to another user than the one running the test.
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
		},
		InheritEnv: []string{"PATH"},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
			h.Refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="promoter test git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.Authorized.Add(1)
		// net/http/cgi passes the Git-Protocol header on as HTTP_GIT_PROTOCOL, which is
		// where http-backend looks for a protocol v2 request.
		backend.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return h
}
