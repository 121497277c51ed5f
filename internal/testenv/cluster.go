package testenv

import (
	"context"
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

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promoter-dev/promoter/internal/localregistry"
)

// The cluster's network, all inside its own namespace (Netns): private-range addresses
// that exist nowhere else on the machine.
const (
	clusterNodeIP      = "10.231.0.1"
	clusterPodCIDR     = "10.232.0.0/24"
	clusterServiceCIDR = "10.233.0.0/24"
	clusterNodeName    = "promoter-node"
	// clusterRegistryPort is the node's registry, at NodeIP:5000: where every image the
	// cluster runs comes from.
	clusterRegistryPort = 5000
	// clusterLock serialises the clusters of all test processes on this machine: kubelet
	// owns the kubepods cgroups and a few global sysctls, which two nodes would share.
	clusterLock = "promoter-testenv-node.lock"
)

// KubeCluster is a real one-node Kubernetes: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet with containerd and runc, kube-proxy (iptables) and CoreDNS,
// from the binaries hack/kube-assets.sh and hack/node.sh build. Everything runs inside a
// network namespace the test made, with the node IP on that namespace's loopback and the
// pod and service CIDRs, CNI bridge and kube-proxy rules all inside it: nothing on the
// host's network changes. Images come only from the node's own registry (Registry),
// served by the test process inside the namespace; the sandbox image is built from
// testenv/pause.
//
// When the test ends everything is stopped and removed, and what is left is reported as
// a test error: processes, mounts, kubepods cgroups, the namespace and the sysctls kubelet
// changes.
type KubeCluster struct {
	*Kube
	Netns *Netns
	// NodeIP is the node's address inside Netns; the apiserver is https://NodeIP:6443.
	NodeIP string
	// Registry is the node's registry, http://NodeIP:5000 inside Netns; Push writes to it.
	Registry *localregistry.Registry

	dir     string // short: containerd's shim sockets live under it
	assets  string
	procs   []*clusterProc
	sysctls map[string]string // kubelet's global sysctls, as they were
	// hostPaths are the fixed host paths the node writes to (hostPaths), and whether each
	// was there before it started.
	hostPaths map[string]bool
}

// hostPaths are the host paths kubelet, containerd and the CNI plugins write to whatever
// they are told: kubelet's device-plugin socket and container log links, containerd's
// shim sockets, libcni's result cache.
var hostPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/run/containerd", "/var/lib/cni"}

type clusterProc struct {
	name string
	p    *process
	log  string
}

// StartKubeCluster starts a one-node cluster and waits until the node is Ready and CoreDNS
// answers. Only one runs at a time on a machine (see clusterLock); a second waits for
// the first test to end. The test must not be parallel.
func StartKubeCluster(t testing.TB) *KubeCluster {
	t.Helper()
	assets, err := nodeAssets()
	if err != nil {
		Require(t, "node binaries: %v", err)
	}
	lockMachine(t, clusterLock)
	c := &KubeCluster{NodeIP: clusterNodeIP, assets: assets, sysctls: map[string]string{}, hostPaths: map[string]bool{}}
	for _, p := range hostPaths {
		_, err := os.Lstat(p)
		c.hostPaths[p] = err == nil
	}
	// Under /tmp with a short name: unix socket paths (containerd's shims) have a
	// 108-byte limit that t.TempDir's long names would exceed.
	if c.dir, err = os.MkdirTemp("", "pn-"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"} {
		c.sysctls[k] = readSysctl(k)
	}
	c.Netns = NewNetns(t)
	// Registered after the namespace's own cleanup, so it runs before it.
	t.Cleanup(func() { c.teardown(t) })
	if err := c.Netns.IP("addr", "add", c.NodeIP+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	// A route for Service IPs from the node itself (the test's clients, helm): without
	// one, connect fails before kube-proxy's OUTPUT rules can rewrite the address to a
	// pod's, after which the packet is routed again, to the pod's bridge.
	if err := c.Netns.IP("route", "add", clusterServiceCIDR, "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	if err := c.startRegistry(t); err != nil {
		t.Fatal(err)
	}
	c.Kube = StartKube(t, func(o *kubeOptions) {
		o.node = &nodeNetwork{ns: c.Netns, ip: c.NodeIP, serviceCIDR: clusterServiceCIDR}
	})
	kubeconfig, err := c.componentKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what string
		run  func() error
	}{
		{"containerd", c.startContainerd},
		{"kube-controller-manager", func() error { return c.startControllerManager(kubeconfig) }},
		{"kube-scheduler", func() error {
			return c.start("kube-scheduler", filepath.Join(assets, "kube-scheduler"),
				"--kubeconfig="+kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1")
		}},
		{"kubelet", func() error { return c.startKubelet(kubeconfig) }},
		{"kube-proxy", func() error { return c.startKubeProxy(kubeconfig) }},
		{"CoreDNS", func() error { return c.startCoreDNS(kubeconfig) }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			Require(t, "cluster: %s: %v", s.what, err)
		}
	}
	if err := c.waitNodeReady(2 * time.Minute); err != nil {
		Require(t, "cluster: %v\n%s", err, c.logTails(20))
	}
	return c
}

// start runs a node component inside the namespace, logging to DIR/NAME.log.
func (c *KubeCluster) start(name, bin string, args ...string) error {
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Netns.Start(cmd); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(exited) }()
	c.procs = append(c.procs, &clusterProc{name: name, p: &process{cmd: cmd, exited: exited}, log: logPath})
	// A component that cannot start (a bad flag, a port taken) exits at once.
	select {
	case <-exited:
	case <-time.After(200 * time.Millisecond):
	}
	if st := c.procs[len(c.procs)-1].p.exit(); st != "" {
		return fmt.Errorf("%s exited at once: %s\n%s", name, st, tail(logPath, 30))
	}
	return nil
}

// startRegistry serves the node's registry inside the namespace and pushes the sandbox
// image to it.
func (c *KubeCluster) startRegistry(t testing.TB) error {
	l, err := c.Netns.Listen("tcp", fmt.Sprintf("%s:%d", c.NodeIP, clusterRegistryPort))
	if err != nil {
		return fmt.Errorf("node registry: %w", err)
	}
	r, err := localregistry.Start(context.Background(), filepath.Join(c.dir, "registry"), localregistry.WithListener(l))
	if err != nil {
		return err
	}
	t.Cleanup(func() { r.Close() })
	c.Registry = r
	pause, err := pauseImage(filepath.Join(c.dir, "pause"))
	if err != nil {
		return err
	}
	return c.push(c.SandboxImage(), pause)
}

// SandboxImage is the pause image containerd runs every pod's sandbox from.
func (c *KubeCluster) SandboxImage() string { return c.Registry.Host + "/pause:1" }

// Push writes img to ref on the node's registry (Registry.Host + "/repo:tag").
func (c *KubeCluster) Push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	if err := c.push(ref, img); err != nil {
		t.Fatal(err)
	}
}

func (c *KubeCluster) push(ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	tr := &http.Transport{DialContext: c.Netns.DialContext}
	if err := remote.Write(r, img, remote.WithTransport(tr)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// componentKubeconfig is the admin kubeconfig the node's components use, verifying the
// apiserver's serving certificate.
func (c *KubeCluster) componentKubeconfig() (string, error) {
	path := filepath.Join(c.dir, "admin.kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: node
  context: {cluster: node, user: admin}
current-context: node
`, c.URL, filepath.Join(c.Kube.dir, "certs", "apiserver.crt"), c.Token)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

func (c *KubeCluster) startContainerd() error {
	d := filepath.Join(c.dir, "containerd")
	registryDir := filepath.Join(c.dir, "certs.d", c.Registry.Host)
	if err := os.MkdirAll(registryDir, 0o755); err != nil {
		return err
	}
	// The node's registry speaks plain HTTP.
	hosts := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", c.Registry.Host, c.Registry.Host)
	if err := os.WriteFile(filepath.Join(registryDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return err
	}
	cniDir := filepath.Join(c.dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "promoter", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}`, filepath.Join(c.dir, "cni-ipam"), clusterPodCIDR)
	if err := os.WriteFile(filepath.Join(cniDir, "10-promoter.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %[5]q
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %[6]q
  [plugins.'io.containerd.cri.v1.runtime']
    # runc cannot lower oom_score_adj here: the machine's bounding set lacks
    # CAP_SYS_RESOURCE, and every sandbox would fail.
    restrict_oom_score_adj = true
    # Pod network namespaces under the state dir, not in the host's /run/netns.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '/usr/sbin/runc'
      Root = %[7]q
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = %[8]q
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.internal.v1.opt']
    path = %[9]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), c.containerdSocket(), c.containerdSocket()+".ttrpc",
		c.SandboxImage(), filepath.Join(c.dir, "certs.d"), filepath.Join(d, "runc"), cniDir, filepath.Join(d, "opt"))
	path := filepath.Join(c.dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := c.start("containerd", filepath.Join(c.assets, "containerd"), "--config", path); err != nil {
		return err
	}
	return WaitFor(30*time.Second, func() error {
		_, err := os.Stat(c.containerdSocket())
		return err
	})
}

func (c *KubeCluster) containerdSocket() string { return filepath.Join(c.dir, "containerd.sock") }

func (c *KubeCluster) startControllerManager(kubeconfig string) error {
	return c.start("kube-controller-manager", filepath.Join(c.assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--cert-dir="+filepath.Join(c.dir, "kcm-certs"),
		"--service-account-private-key-file="+filepath.Join(c.Kube.dir, "sa.key"),
		// The kube-root-ca.crt ConfigMap of every namespace: pods verify the apiserver.
		"--root-ca-file="+filepath.Join(c.Kube.dir, "certs", "apiserver.crt"),
		"--service-cluster-ip-range="+clusterServiceCIDR,
	)
}

func (c *KubeCluster) startKubelet(kubeconfig string) error {
	resolv := filepath.Join(c.dir, "resolv.conf")
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 only on this machine: its v2 hierarchy has no controllers.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%[1]s
podLogsDir: %[2]q
address: %[3]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# Only the apiserver, in the same private namespace, talks to it.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDNS: [%[3]s]
clusterDomain: cluster.local
resolvConf: %[4]q
serializeImagePulls: false
# A test machine's disk is what it is: evict only when it is really full.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, c.containerdSocket(), filepath.Join(c.dir, "pod-logs"), c.NodeIP, resolv)
	path := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	return c.start("kubelet", filepath.Join(c.assets, "kubelet"),
		"--config="+path,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(c.dir, "kubelet"),
		"--cert-dir="+filepath.Join(c.dir, "kubelet-pki"),
		"--hostname-override="+clusterNodeName,
		"--node-ip="+c.NodeIP,
	)
}

func (c *KubeCluster) startKubeProxy(kubeconfig string) error {
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the machine's conntrack table size alone.
conntrack: {maxPerCore: 0, min: 0}
`, kubeconfig, clusterPodCIDR, clusterNodeName, c.NodeIP)
	path := filepath.Join(c.dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	return c.start("kube-proxy", filepath.Join(c.assets, "kube-proxy"), "--config="+path)
}

// startCoreDNS serves cluster DNS on the node IP (the kubelet's clusterDNS), from a
// process on the node rather than a pod: no image to build, and it is up before any pod.
func (c *KubeCluster) startCoreDNS(kubeconfig string) error {
	corefile := fmt.Sprintf(`.:53 {
    bind %s
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, c.NodeIP, kubeconfig)
	path := filepath.Join(c.dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		return err
	}
	return c.start("coredns", filepath.Join(c.assets, "coredns"), "-conf", path)
}

func (c *KubeCluster) waitNodeReady(timeout time.Duration) error {
	var last string
	err := WaitFor(timeout, func() error {
		for _, p := range c.procs {
			if st := p.p.exit(); st != "" {
				return fmt.Errorf("%s exited: %s", p.name, st)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := c.Client.CoreV1().Nodes().Get(ctx, clusterNodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				last = fmt.Sprintf("%s: %s", cond.Reason, cond.Message)
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		return errors.New(last)
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready within %s: %v (last: %s)", clusterNodeName, timeout, err, last)
	}
	return nil
}

// logTails is the last lines of each component's log, for a failure message.
func (c *KubeCluster) logTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.name, tail(p.log, n))
	}
	return b.String()
}

// WaitFor polls f every 100 ms until it succeeds or timeout passes, returning its last
// error; an error of f's that wraps ErrGiveUp (GiveUp) ends the wait at once.
func WaitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || errors.Is(err, ErrGiveUp) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ErrGiveUp marks an error that makes WaitFor stop polling: what it waits for can no
// longer happen (the process that would answer exited).
var ErrGiveUp = errors.New("gave up waiting")

// GiveUp is err, marked to end WaitFor's wait at once; its message stays err's.
func GiveUp(err error) error { return giveUp{err} }

type giveUp struct{ error }

func (g giveUp) Unwrap() []error { return []error{g.error, ErrGiveUp} }

func readSysctl(key string) string {
	b, _ := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	return strings.TrimSpace(string(b))
}

// nodeAssets finds the node's binaries: $PROMOTER_NODE_ASSETS, else the directory
// hack/node.sh prints (building them on first use, ~10 minutes cold).
func nodeAssets() (string, error) {
	dir := os.Getenv("PROMOTER_NODE_ASSETS")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		out, err := exec.Command("bash", filepath.Join(root, "hack", "node.sh")).Output()
		if err != nil {
			return "", fmt.Errorf("hack/node.sh: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "coredns"} {
		if !isExecutable(filepath.Join(dir, b)) {
			return "", fmt.Errorf("%s has no executable %s (run `bash hack/node.sh`)", dir, b)
		}
	}
	// containerd starts its shim by name from PATH.
	if !strings.Contains(os.Getenv("PATH"), dir) {
		os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	return dir, nil
}
