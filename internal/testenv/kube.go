package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Kube is a real kube-apiserver backed by a real etcd, both on loopback. No scheduler, kubelet
// or controller-manager runs: tests play the node by updating Job status themselves, or
// start a Node, which runs build Jobs with real BuildKit.
type Kube struct {
	// URL is the apiserver's https://127.0.0.1:PORT.
	URL string
	// Token is the bearer token of the admin user (group system:masters).
	Token string
	// Config is an admin rest.Config; Client is a clientset on it.
	Config *rest.Config
	Client kubernetes.Interface
	// Issuer is the service-account issuer: the iss claim of the tokens the apiserver
	// mints (see WithPublicIssuer).
	Issuer string

	dir    string
	tokens map[string]string
	ns     *Netns // the node's namespace the apiserver listens in (StartKubeCluster); nil: loopback
}

// KubeUsers are the non-admin users the token file defines, with no groups and so no
// permissions until a test binds a Role to them.
var KubeUsers = []string{"builder", "alice"}

// KubeOption configures StartKube.
type KubeOption func(*kubeOptions)

type kubeOptions struct {
	publicIssuer bool
	node         *nodeNetwork // StartKubeCluster's: serve on the node IP inside its namespace
}

// nodeNetwork is where a cluster's apiserver serves: on the node IP inside the node's
// namespace, with admission as a real cluster has it (service accounts, endpoints), so
// pods reach it as https://kubernetes.default.svc.
type nodeNetwork struct {
	ns          *Netns
	ip          string
	serviceCIDR string
}

// DefaultServiceAccountIssuer is the apiserver's service-account issuer unless
// WithPublicIssuer is given: the in-cluster name, which nothing outside a cluster resolves.
const DefaultServiceAccountIssuer = "https://kubernetes.default.svc"

// WithPublicIssuer makes the apiserver an OIDC issuer a relying party outside the cluster
// can use, as a private Fulcio does (StartSigstore): the service-account issuer is the
// apiserver's own URL (go-oidc wants the iss claim to equal the URL it discovered), the
// discovery document names the apiserver's own JWKS endpoint, and both are readable
// without credentials (system:service-account-issuer-discovery bound to
// system:unauthenticated). Default: off, the issuer is DefaultServiceAccountIssuer and
// discovery is for service accounts only.
func WithPublicIssuer() KubeOption {
	return func(o *kubeOptions) { o.publicIssuer = true }
}

// StartKube starts etcd and kube-apiserver from the binaries hack/kube-assets.sh builds
// ($PROMOTER_KUBE_ASSETS, else the script is run), the way controller-runtime's envtest
// runs them, and stops both when the test ends.
func StartKube(t testing.TB, opts ...KubeOption) *Kube {
	t.Helper()
	var o kubeOptions
	for _, opt := range opts {
		opt(&o)
	}
	assets, err := kubeAssets()
	if err != nil {
		Require(t, "kube-apiserver/etcd binaries: %v", err)
	}
	dir := t.TempDir()
	k := &Kube{dir: dir, Token: randomHex(16), tokens: map[string]string{}}
	bind := "127.0.0.1"
	if o.node != nil {
		k.ns, bind = o.node.ns, o.node.ip
	}

	etcdURL, err := startEtcd(t, assets, dir, k.ns)
	if err != nil {
		Require(t, "etcd: %v", err)
	}
	port := 6443 // alone in the node's namespace
	if k.ns == nil {
		port = freePort(t)
	}
	k.URL = fmt.Sprintf("https://%s:%d", bind, port)
	if err := k.writeAuthFiles(); err != nil {
		t.Fatalf("kube auth files: %v", err)
	}
	k.Issuer = DefaultServiceAccountIssuer
	if o.publicIssuer {
		k.Issuer = k.URL
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + bind,
		"--advertise-address=" + bind,
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=" + k.Issuer,
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
	}
	if o.node != nil {
		// A real cluster's: service-account tokens in pods, the kubernetes Service's
		// endpoints on the node IP.
		args = append(args, "--service-cluster-ip-range="+o.node.serviceCIDR,
			// Logs and exec through the kubelet at the node IP: nothing resolves its name.
			"--kubelet-preferred-address-types=InternalIP")
	} else {
		args = append(args, "--service-cluster-ip-range=10.0.0.0/24",
			"--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none")
	}
	if o.publicIssuer {
		args = append(args, "--service-account-jwks-uri="+k.URL+"/openid/v1/jwks")
	}
	cmd, logf, err := startProcessIn(t, k.ns, filepath.Join(assets, "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"), args...)
	if err != nil {
		Require(t, "kube-apiserver: %v", err)
	}
	if err := k.waitReady(60*time.Second, cmd); err != nil {
		Require(t, "kube-apiserver not ready: %v\n%s", err, tail(logf, 30))
	}
	k.Config = k.configFor(k.Token)
	k.Client, err = kubernetes.NewForConfig(k.Config)
	if err != nil {
		t.Fatalf("kube client: %v", err)
	}
	if o.publicIssuer {
		if err := k.openDiscovery(); err != nil {
			t.Fatalf("opening OIDC discovery to unauthenticated clients: %v", err)
		}
	}
	return k
}

// openDiscovery lets anyone read the issuer's discovery document and JWKS, as a cluster
// whose tokens an outside relying party verifies must.
func (k *Kube) openDiscovery() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := k.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "promoter-test:service-account-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{})
	return err
}

// ServingCA is the PEM of the apiserver's self-signed serving certificate and the CA that
// signed it (what --cert-dir holds), for clients that verify its TLS.
func (k *Kube) ServingCA() ([]byte, error) {
	return os.ReadFile(filepath.Join(k.dir, "certs", "apiserver.crt"))
}

// UserConfig is a rest.Config authenticating as one of KubeUsers.
func (k *Kube) UserConfig(t testing.TB, user string) *rest.Config {
	t.Helper()
	tok, ok := k.tokens[user]
	if !ok {
		t.Fatalf("no kube user %q; the token file defines %v", user, KubeUsers)
	}
	return k.configFor(tok)
}

// Kubeconfig writes a kubeconfig for the admin user and returns its path, for CLIs such
// as helm or promoter builder --kubeconfig.
func (k *Kube) Kubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(k.dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
`, k.URL, k.Token)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (k *Kube) configFor(token string) *rest.Config {
	cfg := &rest.Config{
		Host:            k.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             100,
		Burst:           200,
	}
	if k.ns != nil {
		cfg.Dial = k.ns.DialContext
	}
	return cfg
}

func (k *Kube) writeAuthFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(k.dir, "sa.key"), pemKey, 0o600); err != nil {
		return err
	}
	// token,user,uid,"group1,group2"
	lines := []string{fmt.Sprintf(`%s,admin,admin,"system:masters"`, k.Token)}
	for _, u := range KubeUsers {
		k.tokens[u] = randomHex(16)
		lines = append(lines, fmt.Sprintf("%s,%s,%s", k.tokens[u], u, u))
	}
	return os.WriteFile(filepath.Join(k.dir, "tokens.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func (k *Kube) waitReady(timeout time.Duration, proc *process) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if k.ns != nil {
		tr.DialContext = k.ns.DialContext
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	err := WaitFor(timeout, func() error {
		if st := proc.exit(); st != "" {
			return GiveUp(fmt.Errorf("exited: %s", st))
		}
		req, _ := http.NewRequest(http.MethodGet, k.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrGiveUp) {
		return fmt.Errorf("no ready answer within %s (last: %w)", timeout, err)
	}
	return err
}

func startEtcd(t testing.TB, assets, dir string, ns *Netns) (string, error) {
	client, peer := freePort(t), freePort(t)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	cmd, logf, err := startProcessIn(t, ns, filepath.Join(assets, "etcd"), filepath.Join(dir, "etcd.log"),
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync=true",
	)
	if err != nil {
		return "", err
	}
	hc := http.DefaultClient
	if ns != nil {
		hc = &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}}
	}
	err = WaitFor(30*time.Second, func() error {
		if st := cmd.exit(); st != "" {
			return GiveUp(fmt.Errorf("etcd exited: %s\n%s", st, tail(logf, 20)))
		}
		resp, err := hc.Get(clientURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if errors.Is(err, ErrGiveUp) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("etcd not healthy within 30s\n%s", tail(logf, 20))
	}
	return clientURL, nil
}

// startProcess runs bin in its own process group with output to logPath, killed (with its
// group) when the test ends.
func startProcess(t testing.TB, bin, logPath string, args ...string) (*process, string, error) {
	return startProcessIn(t, nil, bin, logPath, args...)
}

// startProcessIn is startProcess inside ns (nil: the test's own namespace).
func startProcessIn(t testing.TB, ns *Netns, bin, logPath string, args ...string) (*process, string, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := cmd.Start
	if ns != nil {
		start = func() error { return ns.Start(cmd) }
	}
	if err := start(); err != nil {
		logFile.Close()
		return nil, "", fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p := &process{cmd: cmd, exited: exited}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logFile.Close()
	})
	return p, logPath, nil
}

// process is a started command whose Wait runs in its own goroutine; its state may be
// read only once exited is closed.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// exit reports how the process ended, or "" while it runs.
func (p *process) exit() string {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.String()
	default:
		return ""
	}
}

// kubeAssets finds the binaries: $PROMOTER_KUBE_ASSETS, else the directory
// hack/kube-assets.sh prints (building them on first use, ~10 minutes cold).
func kubeAssets() (string, error) {
	if d := os.Getenv("PROMOTER_KUBE_ASSETS"); d != "" {
		for _, b := range []string{"kube-apiserver", "etcd"} {
			if !isExecutable(filepath.Join(d, b)) {
				return "", fmt.Errorf("PROMOTER_KUBE_ASSETS=%s has no executable %s (run hack/kube-assets.sh)", d, b)
			}
		}
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "kube-assets.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/kube-assets.sh: %v\n%s", err, lastLines(stderr.String(), 20))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
