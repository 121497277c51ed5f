package testenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"google.golang.org/protobuf/encoding/protojson"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Sigstore is a private sigstore stack on loopback: a Fulcio with an ephemeral CA whose
// one OIDC issuer is a test kube-apiserver (so a service account's token buys a signing
// certificate for https://kubernetes.io/namespaces/NS/serviceaccounts/SA), an RFC 3161
// timestamp authority with an in-memory key, and a Rekor v2 transparency log (rekor-tiles
// on a POSIX directory). No certificate transparency. Signatures prove their time with
// the timestamp (Rekor v2 entries carry none); a log entry is added only by a signer
// given RekorURL, and the signing config names no log.
type Sigstore struct {
	// FulcioURL, TSAURL and RekorURL are the servers' http://127.0.0.1:PORT; the
	// timestamp endpoint is TSAURL + "/api/v1/timestamp".
	FulcioURL, TSAURL, RekorURL string
	// Issuer is the OIDC issuer Fulcio trusts and writes into its certificates: the
	// kube-apiserver's service-account issuer.
	Issuer string
	// TrustedRoot is a sigstore trusted_root.json holding Fulcio's and the TSA's
	// certificate chains and the log's key, as `cosign trusted-root create` writes it (for
	// verify.trustedRoot and cosign --trusted-root).
	TrustedRoot string
	// SigningConfig is a sigstore signing config naming Fulcio and the TSA, as `cosign
	// signing-config create` writes it (for cosign sign --signing-config).
	SigningConfig string

	kube *Kube
	dir  string
}

// SigstoreAudience is the audience of the identity tokens Fulcio accepts (its ClientID).
const SigstoreAudience = "sigstore"

// tsaMetricsLock serialises the timestamp authorities of all test processes on this
// machine: timestamp-server always serves its metrics on :2112 (no flag moves them) and
// exits when that port is taken, so a second one at a time would die.
const tsaMetricsLock = "promoter-testenv-tsa-2112.lock"

// StartSigstore starts Fulcio and a timestamp authority from the binaries hack/sigstore.sh
// builds ($PROMOTER_SIGSTORE, else its default directory), with kube as Fulcio's OIDC
// issuer, and writes the trusted root and signing config with the cosign CLI. kube must
// have been started WithPublicIssuer. Only one StartSigstore runs at a time on a machine
// (see tsaMetricsLock): a second waits for the first test to end, failing after 10 minutes.
// Everything stops when the test ends.
func StartSigstore(t testing.TB, kube *Kube) *Sigstore {
	t.Helper()
	if kube.Issuer == DefaultServiceAccountIssuer {
		t.Fatalf("StartSigstore: the kube-apiserver's issuer is %s, which Fulcio cannot reach: start it with testenv.StartKube(t, testenv.WithPublicIssuer())", kube.Issuer)
	}
	bins, err := sigstoreDir()
	if err != nil {
		Require(t, "sigstore binaries: %v", err)
	}
	cosign := Tool(t, "cosign")
	s := &Sigstore{Issuer: kube.Issuer, kube: kube, dir: t.TempDir()}

	if err := s.startFulcio(t, bins); err != nil {
		Require(t, "fulcio: %v", err)
	}
	lockTSAMetrics(t)
	if err := s.startTSA(t, bins); err != nil {
		Require(t, "timestamp-server: %v", err)
	}
	if err := s.startRekor(t, bins); err != nil {
		Require(t, "rekor-server: %v", err)
	}
	if err := s.writeConfigs(t, cosign); err != nil {
		t.Fatalf("sigstore trusted root and signing config: %v", err)
	}
	return s
}

func (s *Sigstore) startFulcio(t testing.TB, bins string) error {
	caPEM, err := s.kube.ServingCA()
	if err != nil {
		return fmt.Errorf("reading the kube-apiserver's serving CA: %w", err)
	}
	type issuer struct {
		IssuerURL, ClientID, Type, CACert string
	}
	cfg, err := json.Marshal(map[string]map[string]issuer{"OIDCIssuers": {
		s.Issuer: {IssuerURL: s.Issuer, ClientID: SigstoreAudience, Type: "kubernetes", CACert: string(caPEM)},
	}})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(s.dir, "fulcio.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	ports := freePorts(t, 3)
	s.FulcioURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	logPath := filepath.Join(s.dir, "fulcio.log")
	proc, _, err := startProcess(t, filepath.Join(bins, "fulcio"), logPath, "serve",
		"--host", "127.0.0.1", fmt.Sprintf("--port=%d", ports[0]),
		"--grpc-host", "127.0.0.1", fmt.Sprintf("--grpc-port=%d", ports[1]),
		// Off timestamp-server's fixed 2112, which is also Fulcio's default.
		fmt.Sprintf("--metrics-port=%d", ports[2]),
		// Its default is one abstract socket name per network namespace: two Fulcios clash.
		"--legacy-unix-domain-socket=@promoter-testenv-fulcio-"+randomHex(8),
		"--ca", "ephemeralca",
		// No certificate transparency log.
		"--ct-log-url=",
		"--config-path", cfgPath,
	)
	if err != nil {
		return err
	}
	if err := waitGet(proc, s.FulcioURL+"/api/v1/rootCert", 60*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(logPath, 30))
	}
	return nil
}

func (s *Sigstore) startTSA(t testing.TB, bins string) error {
	port := freePort(t)
	s.TSAURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	logPath := filepath.Join(s.dir, "timestamp-server.log")
	proc, _, err := startProcess(t, filepath.Join(bins, "timestamp-server"), logPath, "serve",
		"--host", "127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--timestamp-signer", "memory",
		"--disable-ntp-monitoring",
	)
	if err != nil {
		return err
	}
	if err := waitGet(proc, s.TSAURL+"/api/v1/timestamp/certchain", 60*time.Second); err != nil {
		return fmt.Errorf("%w (its metrics need port 2112 free)\n%s", err, tail(logPath, 30))
	}
	return nil
}

// rekorOrigin is the log's checkpoint origin (rekor-server --hostname). sigstore-go
// checks it against the hostname of the log's URL in the trusted root, so it is the
// loopback address the log is served on.
const rekorOrigin = "127.0.0.1"

// startRekor starts a Rekor v2 log (rekor-tiles' POSIX server) with a fresh ed25519
// key, whose public half goes into the trusted root.
func (s *Sigstore) startRekor(t testing.TB, bins string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return err
	}
	keyPath := filepath.Join(s.dir, "rekor.key")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "rekor.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	ports := freePorts(t, 3)
	s.RekorURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	logPath := filepath.Join(s.dir, "rekor.log")
	proc, _, err := startProcess(t, filepath.Join(bins, "rekor-server"), logPath, "serve",
		"--http-address", "127.0.0.1", fmt.Sprintf("--http-port=%d", ports[0]),
		"--grpc-address", "127.0.0.1", fmt.Sprintf("--grpc-port=%d", ports[1]),
		// Off timestamp-server's fixed 2112, which is also Rekor's default.
		fmt.Sprintf("--http-metrics-port=%d", ports[2]),
		"--hostname", rekorOrigin,
		"--storage-dir", filepath.Join(s.dir, "rekor"),
		"--signer-filepath", keyPath,
		// An entry is answered once a checkpoint covers it: every second, not every 10.
		"--checkpoint-interval=1s",
	)
	if err != nil {
		return err
	}
	if err := waitGet(proc, s.RekorURL+"/healthz", 60*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(logPath, 30))
	}
	return nil
}

// writeConfigs fetches the servers' certificate chains and has the cosign CLI write the
// trusted root and the signing config, as an operator of a private sigstore does.
func (s *Sigstore) writeConfigs(t testing.TB, cosign string) error {
	fulcioPEM := filepath.Join(s.dir, "fulcio.pem")
	tsaPEM := filepath.Join(s.dir, "tsa.pem")
	for path, url := range map[string]string{fulcioPEM: s.FulcioURL + "/api/v1/rootCert", tsaPEM: s.TSAURL + "/api/v1/timestamp/certchain"} {
		b, err := get(url)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	s.TrustedRoot = filepath.Join(s.dir, "trusted_root.json")
	s.SigningConfig = filepath.Join(s.dir, "signing_config.json")
	const since = "start-time=2024-01-01T00:00:00Z,operator=local"
	tsa := s.TSAURL + "/api/v1/timestamp"
	for _, args := range [][]string{
		{"trusted-root", "create",
			"--fulcio=url=" + s.FulcioURL + ",certificate-chain=" + fulcioPEM,
			"--tsa=url=" + tsa + ",certificate-chain=" + tsaPEM,
			"--rekor=url=" + s.RekorURL + ",public-key=" + filepath.Join(s.dir, "rekor.pub") + ",start-time=2024-01-01T00:00:00Z,origin=" + rekorOrigin,
			"--out", s.TrustedRoot},
		{"signing-config", "create",
			"--fulcio=url=" + s.FulcioURL + ",api-version=1," + since,
			"--tsa=url=" + tsa + ",api-version=1," + since,
			"--tsa-config=EXACT:1",
			"--out", s.SigningConfig},
	} {
		if out, err := Cosign(t, cosign, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("cosign %s %s: %w\n%s", args[0], args[1], err, out)
		}
	}
	return nil
}

// Cosign is the cosign CLI with args, run offline: a HOME and TUF root of its own in a
// temporary directory of t (so it never reads or writes the user's), and a dead proxy for
// anything not on loopback, so a command that would reach public-good Sigstore fails
// instead of leaving the machine.
func Cosign(t testing.TB, cosign string, args ...string) *exec.Cmd {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(context.Background(), cosign, args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost")
	return cmd
}

// Identity is the certificate identity (URI SAN) Fulcio gives a service account's token.
func (s *Sigstore) Identity(namespace, serviceAccount string) string {
	return fmt.Sprintf("https://kubernetes.io/namespaces/%s/serviceaccounts/%s", namespace, serviceAccount)
}

// IdentityToken creates namespace and service account (if they do not exist), mints a
// token for it with TokenRequest, audience SigstoreAudience, valid for 10 minutes (the
// shortest the apiserver grants), and writes it to a file, whose path it returns: cosign
// takes --identity-token as a file.
func (s *Sigstore) IdentityToken(t testing.TB, namespace, serviceAccount string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.kube.Client.CoreV1()
	if _, err := c.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}
	if _, err := c.ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating service account %s/%s: %v", namespace, serviceAccount, err)
	}
	expiry := int64(600)
	tr, err := c.ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: []string{SigstoreAudience}, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", namespace, serviceAccount, err)
	}
	path := filepath.Join(t.TempDir(), serviceAccount+".token")
	if err := os.WriteFile(path, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// SigstoreBundles reads the sigstore bundle referrers of ref (repo@digest): the bundles a
// keyless signer (promoter's or `cosign sign`) attached to it, in the order the registry
// lists them.
func SigstoreBundles(t testing.TB, ref string) []*sgbundle.Bundle {
	t.Helper()
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var out []*sgbundle.Bundle
	for _, m := range Referrers(t, ref) {
		if !strings.HasPrefix(m.ArtifactType, "application/vnd.dev.sigstore.bundle") {
			continue
		}
		img, err := remote.Image(d.Context().Digest(m.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("bundle manifest %s: %d layers, %v", m.Digest, len(layers), err)
		}
		rc, err := layers[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		var pb protobundle.Bundle
		if err := protojson.Unmarshal(raw, &pb); err != nil {
			t.Fatal(err)
		}
		b, err := sgbundle.NewBundle(&pb)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// sigstoreDir finds the binaries: $PROMOTER_SIGSTORE, else the directory
// hack/sigstore.sh installs into by default.
func sigstoreDir() (string, error) {
	d := os.Getenv("PROMOTER_SIGSTORE")
	from := "PROMOTER_SIGSTORE=" + d
	if d == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("PROMOTER_SIGSTORE is not set and there is no cache directory: %w", err)
		}
		d = filepath.Join(cache, "promoter", "sigstore")
		from = d + " (PROMOTER_SIGSTORE is not set)"
	}
	for _, b := range []string{"fulcio", "timestamp-server", "rekor-server"} {
		if !isExecutable(filepath.Join(d, b)) {
			return "", fmt.Errorf("%s has no executable %s (run `bash hack/sigstore.sh`)", from, b)
		}
	}
	return d, nil
}

// lockTSAMetrics holds the machine-wide lock of port 2112 until the test ends.
func lockTSAMetrics(t testing.TB) {
	t.Helper()
	lockMachine(t, tsaMetricsLock)
}

// lockMachine holds the machine-wide lock file name (under the temp dir) until the test
// ends, waiting up to 10 minutes for another test process that holds it.
func lockMachine(t testing.TB, name string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), name), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("lock %s: %v", name, err)
	}
	err = WaitFor(10*time.Minute, func() error {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) {
			return GiveUp(err)
		}
		return err
	})
	if err != nil {
		f.Close()
		t.Fatalf("lock %s (another test holds it): %v", f.Name(), err)
	}
	// Registered before what it guards is started, so it is released after that stops.
	t.Cleanup(func() { f.Close() })
}

// waitGet polls url until it answers 200, or proc exits.
func waitGet(proc *process, url string, timeout time.Duration) error {
	err := WaitFor(timeout, func() error {
		if st := proc.exit(); st != "" {
			return GiveUp(fmt.Errorf("exited: %s", st))
		}
		_, err := get(url)
		return err
	})
	if err != nil && !errors.Is(err, ErrGiveUp) {
		return fmt.Errorf("no answer from %s within %s (last: %v)", url, timeout, err)
	}
	return err
}

func get(url string) ([]byte, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, b)
	}
	return b, nil
}
