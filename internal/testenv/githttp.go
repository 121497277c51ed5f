package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// HTTPAccess is a GitServer's repositories served over git's smart HTTP protocol by the
// real `git http-backend`, behind a token check: the private-repository case BuildKit's
// GIT_AUTH_TOKEN secret is for.
type HTTPAccess struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// CACert is the PEM certificate of the throwaway CA that signed the server's
	// certificate, and CAFile a world-readable copy of it (the build user's git reads
	// it); both empty over plain HTTP.
	CACert []byte
	CAFile string
	// Authorized and Refused count the requests that carried the token and those that did
	// not (each answered 401).
	Authorized, Refused atomic.Int64

	scheme string
}

// URL is the http:// or https:// URL of repository NAME.git.
func (h *HTTPAccess) URL(name string) string {
	return h.scheme + "://" + h.Host + "/" + name + ".git"
}

// ServeHTTP serves the repositories under g.Root over smart HTTP on a loopback port until
// the test ends. Every request must authenticate with HTTP basic auth whose password is
// token, whatever the user name: BuildKit sends GIT_AUTH_TOKEN as "x-access-token:<token>",
// as GitHub and Gitea accept it.
func (g *GitServer) ServeHTTP(t testing.TB, token string) *HTTPAccess {
	t.Helper()
	return g.serveHTTP(t, token, false)
}

// ServeHTTPS is ServeHTTP over TLS, with a certificate for 127.0.0.1 signed by a CA made
// for the test (h.CACert, h.CAFile), which no git trusts until told to.
func (g *GitServer) ServeHTTPS(t testing.TB, token string) *HTTPAccess {
	t.Helper()
	return g.serveHTTP(t, token, true)
}

func (g *GitServer) serveHTTP(t testing.TB, token string, useTLS bool) *HTTPAccess {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		Require(t, "git not on PATH (run `bash hack/buildkit.sh` to install it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for git over http: %v", err)
	}
	h := &HTTPAccess{Host: ln.Addr().String(), scheme: "http"}
	if useTLS {
		h.scheme = "https"
		var cert tls.Certificate
		h.CACert, cert = newServerCert(t, net.IPv4(127, 0, 0, 1))
		h.CAFile = readableFile(t, "ca.pem", h.CACert)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
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

// newServerCert makes a throwaway CA and a server certificate for ip signed by it. The keys
// never leave memory.
func newServerCert(t testing.TB, ip net.IP) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating CA key: %v", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "promoter test git CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("creating CA certificate: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parsing CA certificate: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating server key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ip.String()},
		IPAddresses:  []net.IP{ip},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("creating server certificate: %v", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// readableFile writes data, mode 0644, to NAME in a new directory that every user can
// reach, removed when the test ends, and returns its path. Not t.TempDir: its parent is
// mode 0700, so the build user could not read the file.
func readableFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "promoter-git-")
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := filepath.Join(dir, name)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("writing %s: %v", name, err)
	}
	if err := os.Chmod(p, 0o644); err != nil { // whatever the umask
		t.Fatalf("writing %s: %v", name, err)
	}
	return p
}
