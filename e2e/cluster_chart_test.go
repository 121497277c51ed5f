package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promoter-dev/promoter/internal/selfimage"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// releaseNamespace is where the chart is installed, under the restricted Pod Security
// level the apiserver enforces.
const releaseNamespace = "promoter"

// TestChartInARealCluster installs charts/promoter with `helm install --wait` into a real
// one-node cluster (kubelet, containerd, runc): two daemon replicas, the builder agent and
// the bundled NATS, all from images the project builds (promoter's own image, a static
// nats-server, rootless BuildKit), under the restricted Pod Security level. The pods
// become Ready through their real probes. Then a GitHub push webhook, sent to the
// daemon's Service from inside the cluster's network, is built by the agent's Job in a
// real unprivileged pod from a git server, merged, signed and promoted while one daemon
// pod is deleted, and the cosign CLI verifies the promoted index and its child.
func TestChartInARealCluster(t *testing.T) {
	c := testenv.StartKubeCluster(t)
	helm := testenv.Tool(t, "helm")
	cosign := testenv.Tool(t, "cosign")
	ctx := context.Background()
	reg := c.Registry.Host

	promoterRepo, promoterDigest := pushPromoterImage(t, c)
	natsImage := reg + "/nats:2.15.2"
	c.Push(t, natsImage, testenv.FileImage(t, map[string]string{"/nats-server": staticNATSServer(t)}, []string{"/nats-server"}))
	// The node's registry speaks plain HTTP: the build Jobs get buildkitd.toml from a
	// ConfigMap (builder.buildkitConfig), as a user with such a registry would.
	buildkitImage := reg + "/buildkit:" + testenv.BuildKitVersion + "-rootless"
	c.Push(t, buildkitImage, testenv.RootlessBuildKitImage(t))
	base := reg + "/base:busybox"
	c.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))
	gitsrv := testenv.StartGitServer(t)
	_, rev := gitsrv.CreateRepo(t, "app", map[string]string{
		"Dockerfile": fmt.Sprintf("FROM %s\nRUN echo built in a pod > /built\n", base),
	})
	repoURL := serveGitOnNode(t, c, gitsrv.Root) + "/app.git"

	pubFile := createReleaseNamespace(ctx, t, c)
	natsVolume(t, c)
	values := writeChartValues(t, promoterRepo, promoterDigest, reg, buildkitImage, repoURL)
	helmInstall(t, c, helm, values)
	checkReleasePods(ctx, t, c)

	// The build Jobs' push credentials, in the namespace the chart made for them.
	buildNS := "promoter-builds"
	createBuildPushConfig(ctx, t, c, buildNS)
	// Everything below goes through the cluster's own network: Service IPs exist only in
	// the node's namespace, where kube-proxy's rules are.
	client := &http.Client{Transport: &http.Transport{DialContext: c.Netns.DialContext}, Timeout: 30 * time.Second}
	daemonURL := "http://" + serviceAddr(t, c, "promoter", "http")
	st := &status.Client{URL: "http://" + serviceAddr(t, c, "promoter-status", "status"), HTTP: client}
	sum := githubPushVia(t, client, daemonURL, repoURL, "cluster-1", rev)
	t.Logf("GitHub push of %s to %s: %+v", rev[:12], daemonURL, sum)

	// One daemon pod goes away while the revision is being built; the other finishes it.
	job := waitBuildJob(ctx, t, c, buildNS)
	gone := deleteDaemonPod(ctx, t, c)
	t.Logf("build Job %s created; daemon pod %s deleted", job, gone)

	r := waitClusterPromoted(ctx, t, c, st, rev)
	t.Logf("revision %s promoted: index %s, signed %v, promotions %+v", rev[:12], r.Index, r.Signed, r.Promotions)
	t.Logf("pods:\n%s", podsWide(t, c, ""))
	for _, p := range jobPods(ctx, t, c, buildNS) {
		t.Logf("BuildKit log of build pod %s (its steps and pushes):\n%s", p.Name, buildKitSteps(podLog(ctx, t, c, &p)))
	}

	dest := reg + "/prod/app"
	kids, err := remoteIndexChildren(c, dest+":"+rev)
	if err != nil {
		t.Fatal(err)
	}
	for _, dg := range []string{r.Index, kids["linux/amd64"]} {
		clusterCosignVerify(t, c, cosign, pubFile, dest+"@"+dg)
	}
}

// createReleaseNamespace creates the release namespace, under the restricted Pod Security
// level, with the chart's existing secrets: the webhook tokens and promoter's cosign key
// pair, whose public key it also writes to a file and returns.
func createReleaseNamespace(ctx context.Context, t *testing.T, c *testenv.KubeCluster) (pubFile string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createReleaseSecret(t, c, "promoter-tokens", map[string][]byte{"registry-token": []byte(registryToken), "github-secret": []byte(githubSecret)})
	priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	createReleaseSecret(t, c, "promoter-cosign", map[string][]byte{"cosign.key": priv, "cosign.pub": pub, "cosign.password": []byte("pw")})
	pubFile = filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return pubFile
}

// writeChartValues writes the release's values file and returns its path: two daemon
// replicas of promoter's image (promoterRepo@promoterDigest), the bundled NATS and one
// amd64 builder group, all from the node's registry reg, and one pipeline that builds
// repoURL's main branch with the kubernetes executor (BuildKit image buildkitImage),
// signs and promotes it.
func writeChartValues(t *testing.T, promoterRepo, promoterDigest, reg, buildkitImage, repoURL string) string {
	t.Helper()
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(yamlf(`
image:
	repository: %[1]s
	digest: %[2]s
daemon:
	replicas: 2
webhooks:
	existingSecret: promoter-tokens
	githubSecretKey: github-secret
signing:
	existingSecret: promoter-cosign
nats:
	embedded:
		enabled: true
		image: {repository: %[3]s/nats, tag: "2.15.2"}
		persistence: {size: 1Gi}
builder:
	groups:
		- name: amd64
			platforms: [linux/amd64]
config:
	registries:
		- {host: %[3]s, insecure: true}
	builder:
		image: %[4]s
		buildkitConfig: buildkitd
	pipelines:
		- name: app
			source: {repo: %[5]s, branch: main}
			platforms: [linux/amd64]
			build: {executor: kubernetes}
			staging: %[3]s/staging/app
			sign: true
			promote:
				- to: %[3]s/prod/app
					requireSignature: true
`, promoterRepo, promoterDigest, reg, buildkitImage, repoURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	return values
}

// helmInstall installs charts/promoter as release "promoter" with values, waiting up to 5
// minutes for its pods to be ready.
func helmInstall(t *testing.T, c *testenv.KubeCluster, helm, values string) {
	t.Helper()
	start := time.Now()
	out, err := clusterHelm(t, c, helm, "install", "promoter", "../charts/promoter", "--namespace", releaseNamespace,
		"--values", values, "--wait", "--timeout", "5m")
	if err != nil {
		t.Fatalf("helm install: %v\n%s\n%s", err, out, podsWide(t, c, ""))
	}
	t.Logf("helm install --wait: %s\n%s", time.Since(start).Round(time.Millisecond), lastLines(out, 6))
	t.Logf("pods:\n%s", podsWide(t, c, ""))
}

// checkReleasePods checks the release runs two ready daemon pods, one ready NATS pod and
// one running builder agent.
func checkReleasePods(ctx context.Context, t *testing.T, c *testenv.KubeCluster) {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(releaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]int{}
	for _, p := range pods.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready[p.Labels["app.kubernetes.io/component"]]++
			}
		}
	}
	for component, want := range map[string]int{"daemon": 2, "nats": 1} {
		if ready[component] != want {
			t.Errorf("%d ready %s pods, want %d", ready[component], component, want)
		}
	}
	agents, err := c.Client.CoreV1().Pods(releaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=builder"})
	if err != nil || len(agents.Items) != 1 || agents.Items[0].Status.Phase != corev1.PodRunning {
		t.Fatalf("builder agent pods: %v, %+v", err, agents)
	}
}

// createBuildPushConfig creates, in the build namespace ns, the build Jobs' (empty) push
// credentials and the buildkitd.toml that lets them push to the node's plain-HTTP
// registry.
func createBuildPushConfig(ctx context.Context, t *testing.T, c *testenv.KubeCluster, ns string) {
	t.Helper()
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "buildkitd"},
		Data:       map[string]string{"buildkitd.toml": fmt.Sprintf("[registry.%q]\n  http = true\n", c.Registry.Host)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitBuildJob waits up to 3 minutes for a build Job in namespace ns and returns its name.
func waitBuildJob(ctx context.Context, t *testing.T, c *testenv.KubeCluster, ns string) string {
	t.Helper()
	var job string
	if err := testenv.WaitFor(3*time.Minute, func() error {
		jobs, err := c.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(jobs.Items) == 0 {
			return fmt.Errorf("no build Job yet (%v)", err)
		}
		job = jobs.Items[0].Name
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, podsWide(t, c, ""))
	}
	return job
}

// deleteDaemonPod deletes one of the release's daemon pods at once (no grace period) and
// returns its name.
func deleteDaemonPod(ctx context.Context, t *testing.T, c *testenv.KubeCluster) string {
	t.Helper()
	daemons, err := c.Client.CoreV1().Pods(releaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=daemon"})
	if err != nil || len(daemons.Items) == 0 {
		t.Fatalf("daemon pods: %v", err)
	}
	gone := daemons.Items[0].Name
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(releaseNamespace).Delete(ctx, gone, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	return gone
}

// waitClusterPromoted asks the status API st, for up to 5 minutes, until pipeline app's
// revision rev is settled, and fails the test unless it was promoted.
func waitClusterPromoted(ctx context.Context, t *testing.T, c *testenv.KubeCluster, st *status.Client, rev string) *types.Revision {
	t.Helper()
	var r *types.Revision
	if err := testenv.WaitFor(5*time.Minute, func() error {
		got, err := st.Revision(ctx, "app", rev)
		if err != nil {
			return err
		}
		r = got
		if r.Phase != types.PhasePromoted && r.Phase != types.PhaseFailed && r.Phase != types.PhaseConflicted {
			return fmt.Errorf("revision %s", r.Phase)
		}
		return nil
	}); err != nil || r.Phase != types.PhasePromoted {
		t.Fatalf("revision %s: %v, %+v\n%s", rev[:12], err, r, podsWide(t, c, ""))
	}
	return r
}

// clusterCosignVerify runs `cosign verify` with the public key pubFile on ref, from inside
// the cluster's network.
func clusterCosignVerify(t *testing.T, c *testenv.KubeCluster, cosign, pubFile, ref string) {
	t.Helper()
	cmd := testenv.Cosign(t, cosign, "verify", "--key", pubFile, "--insecure-ignore-tlog", "--allow-http-registry", ref)
	// Offline still, but the node's registry is inside the cluster's namespace.
	cmd.Env = append(cmd.Env, "NO_PROXY=127.0.0.1,localhost,"+c.NodeIP)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := c.Netns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("cosign verify --key cosign.pub %s: %v\n%s", ref, err, out.String())
	} else {
		t.Logf("$ cosign verify --key cosign.pub --insecure-ignore-tlog --allow-http-registry %s\n-> passed", ref)
	}
}

// buildKitSteps are the lines of a BuildKit plain-progress log that name its steps, what
// they ran, and what it pushed.
func buildKitSteps(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "] FROM") || strings.Contains(l, "] RUN") || strings.Contains(l, "git://") ||
			strings.Contains(l, "pushing manifest") || strings.Contains(l, "exporting manifest list") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// serviceAddr is the ClusterIP:port of Service name's port portName in the release
// namespace.
func serviceAddr(t *testing.T, c *testenv.KubeCluster, name, portName string) string {
	t.Helper()
	svc, err := c.Client.CoreV1().Services(releaseNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == portName {
			return fmt.Sprintf("%s:%d", svc.Spec.ClusterIP, p.Port)
		}
	}
	t.Fatalf("Service %s has no port %s: %+v", name, portName, svc.Spec.Ports)
	return ""
}

// jobPods are the build pods in namespace ns.
func jobPods(ctx context.Context, t *testing.T, c *testenv.KubeCluster, ns string) []corev1.Pod {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// remoteIndexChildren is platform → digest of the index ref names on the node's registry.
func remoteIndexChildren(c *testenv.KubeCluster, ref string) (map[string]string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(r, remote.WithTransport(&http.Transport{DialContext: c.Netns.DialContext}))
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range m.Manifests {
		if d.Platform != nil {
			out[d.Platform.String()] = d.Digest.String()
		}
	}
	return out, nil
}

// pushPromoterImage builds promoter's own image for linux/amd64 (internal/selfimage, as
// hack/image.sh does) and pushes it to the node's registry.
func pushPromoterImage(t *testing.T, c *testenv.KubeCluster) (repo, digest string) {
	t.Helper()
	rel, err := selfimage.Build(context.Background(), selfimage.Spec{Dir: "..", Out: t.TempDir(), Version: "v0.0.0-cluster",
		Platforms: []types.Platform{{OS: "linux", Architecture: "amd64"}}})
	if err != nil {
		t.Fatalf("building promoter's image: %v", err)
	}
	img := rel.Images[0].Image
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	repo = c.Registry.Host + "/promoter"
	c.Push(t, repo+":cluster", img)
	return repo, d.String()
}

// staticNATSServer compiles the nats-server this module embeds, statically, for an image.
func staticNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	return bin
}

func createReleaseSecret(t *testing.T, c *testenv.KubeCluster, name string, data map[string][]byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: releaseNamespace}, Data: data}
	if _, err := c.Client.CoreV1().Secrets(releaseNamespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// natsVolume is the PersistentVolume the bundled NATS's claim binds to: the node has no
// storage provisioner, so a hostPath volume is made by hand, world-writable since the
// kubelet does not apply fsGroup to hostPath volumes.
func natsVolume(t *testing.T, c *testenv.KubeCluster) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pn-nats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "nats-data"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
		},
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// clusterHelm runs helm inside the node's network namespace, against the cluster.
func clusterHelm(t *testing.T, c *testenv.KubeCluster, helm string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig(t), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := c.Netns.Start(cmd); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return out.String(), err
}

// podsWide is `kubectl get pods -o wide` for namespace ("" for all).
func podsWide(t *testing.T, c *testenv.KubeCluster, namespace string) string {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-44s %-6s %-10s %-9s %-12s %s\n", "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "IP", "NODE")
	for _, p := range pods.Items {
		ready, restarts := 0, int32(0)
		for _, s := range p.Status.ContainerStatuses {
			if s.Ready {
				ready++
			}
			restarts += s.RestartCount
		}
		status := string(p.Status.Phase)
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Waiting != nil {
				status = s.State.Waiting.Reason
			}
		}
		fmt.Fprintf(&b, "%-16s %-44s %d/%-4d %-10s %-9d %-12s %s\n", p.Namespace, p.Name, ready, len(p.Spec.Containers), status, restarts, p.Status.PodIP, p.Spec.NodeName)
	}
	return b.String()
}
