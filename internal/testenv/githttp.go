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
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
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
// for the test (h.CACert, h.CAFile). No git trusts that CA until told to: see
// TrustInNewRepos.
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

// TrustInNewRepos makes git trust h's CA for h's URLs, and only those, in each repository
// that `git init` or `git clone` creates on this machine until the test ends. It adds a
// config file to git's default template directory, which git init copies into every new
// repository:
//
//	[http "https://127.0.0.1:PORT/"]
//		sslCAInfo = CAFILE
//
// That is the one place the git run by buildkitd looks without the build changing.
// buildkitd gives git a fixed environment: PATH, GIT_TERMINAL_PROMPT=0, GIT_SSH_COMMAND,
// LC_ALL, proxies, and GIT_CONFIG_NOSYSTEM=1, HOME=/dev/null, GIT_CONFIG_GLOBAL=/dev/null
// (moby/buildkit v0.34.2 util/gitutil/git_cli.go, GitCLI.Run; the host's config only with
// WithHostGitConfig, which buildkitd never sets). So /etc/gitconfig, ~/.gitconfig,
// GIT_SSL_CAINFO and GIT_TEMPLATE_DIR never reach it, and buildkitd.toml has CAs for
// registries only. But buildkitd fetches into a repository it makes with `git init --bare`
// (source/git/source.go, mountRemote), and then runs git in it, which reads its config.
// The system CA store stays untouched.
//
// When the test ends the template directory is restored as it was (in a stock git, with no
// config file). A lock file serializes the tests that use this, in any process. A
// repository another program creates meanwhile keeps the section, which names a port
// nothing serves once the test is over. The tests must run as a user that may write to the
// template directory (root); elsewhere they are skipped, or fail in CI.
func (h *HTTPAccess) TrustInNewRepos(t testing.TB) {
	t.Helper()
	if h.CAFile == "" {
		t.Fatalf("TrustInNewRepos: %s is served over plain HTTP", h.Host)
	}
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		Require(t, "git --exec-path: %v", err)
	}
	// PREFIX/lib/git-core or PREFIX/libexec/git-core → PREFIX/share/git-core/templates.
	templates := filepath.Join(filepath.Dir(filepath.Dir(strings.TrimSpace(string(out)))), "share", "git-core", "templates")
	if _, err := os.Stat(filepath.Join(templates, "description")); err != nil {
		Require(t, "git's template directory: %v", err)
	}
	section := fmt.Sprintf("[http %q]\n\tsslCAInfo = %s\n", "https://"+h.Host+"/", h.CAFile)
	addToFile(t, filepath.Join(templates, "config"), section)

	// Check, in buildkitd's git environment, that a new repository has the setting: with
	// another template directory BuildKit's error would be a TLS one.
	repo := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C",
			"GIT_CONFIG_NOSYSTEM=1", "HOME=" + os.DevNull, "GIT_CONFIG_GLOBAL=" + os.DevNull}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s in a new repository: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("-c", "init.defaultBranch=master", "init", "--bare", "-q")
	if got := run("config", "--get-urlmatch", "http.sslCAInfo", h.URL("any")); got != h.CAFile {
		t.Fatalf("a new repository's http.sslCAInfo for %s: got %q, want %s (is %s git's template directory?)",
			h.URL("any"), got, h.CAFile, templates)
	}
}

// addToFile appends text to file until the test ends, then puts file back as it was: the
// same content and mode, or no file. Meanwhile it holds an exclusive lock on file's
// directory, so two tests, in one process or several, never change file at once.
func addToFile(t testing.TB, file, text string) {
	t.Helper()
	dir, err := os.Open(filepath.Dir(file))
	if err != nil {
		t.Fatalf("locking %s: %v", file, err)
	}
	if err := syscall.Flock(int(dir.Fd()), syscall.LOCK_EX); err != nil {
		dir.Close()
		t.Fatalf("locking %s: %v", file, err)
	}
	t.Cleanup(func() { _ = dir.Close() }) // releases the lock, after the restore below

	old, err := os.ReadFile(file)
	existed := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading %s: %v", file, err)
	}
	mode := fs.FileMode(0o644)
	if existed {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		mode = fi.Mode().Perm()
	}
	restore := func() error {
		if !existed {
			return os.Remove(file)
		}
		if err := os.WriteFile(file, old, mode); err != nil {
			return err
		}
		return os.Chmod(file, mode)
	}
	add := string(old)
	if add != "" && !strings.HasSuffix(add, "\n") {
		add += "\n"
	}
	if err := os.WriteFile(file, []byte(add+text), mode); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			Require(t, "cannot write %s: %v (run the tests as root)", file, err)
		}
		t.Fatalf("writing %s: %v", file, err)
	}
	if err := os.Chmod(file, mode); err != nil { // a new file, whatever the umask
		t.Fatalf("writing %s: %v", file, err)
	}
	t.Cleanup(func() {
		if err := restore(); err != nil {
			t.Errorf("restoring %s: %v", file, err)
		}
	})
}
