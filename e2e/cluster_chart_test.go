package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promoter-dev/promoter/internal/selfimage"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// releaseNamespace is where the chart is installed, under the restricted Pod Security
// level the apiserver enforces.
const releaseNamespace = "promoter"

// TestChartInARealCluster installs charts/promoter with `helm install --wait` into a real
// one-node cluster (kubelet, containerd, runc): two daemon replicas, the builder agent and
// the bundled NATS, all from images the project builds (promoter's own image, a static
// nats-server), under the restricted Pod Security level. The pods become Ready through
// their real probes.
func TestChartInARealCluster(t *testing.T) {
	c := testenv.StartKubeCluster(t)
	helm := testenv.Tool(t, "helm")
	ctx := context.Background()

	promoterRepo, promoterDigest := pushPromoterImage(t, c)
	natsImage := c.Registry.Host + "/nats:2.15.2"
	c.Push(t, natsImage, testenv.FileImage(t, map[string]string{"/nats-server": staticNATSServer(t)}, []string{"/nats-server"}))

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
	natsVolume(t, c)

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
	pipelines:
		- name: app
			platforms: [linux/amd64]
			staging: %[3]s/staging/app
			sign: true
			verify: {acceptUnverified: true}
			promote:
				- to: %[3]s/prod/app
					requireSignature: true
`, promoterRepo, promoterDigest, c.Registry.Host)), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := clusterHelm(t, c, helm, "install", "promoter", "../charts/promoter", "--namespace", releaseNamespace,
		"--values", values, "--wait", "--timeout", "5m")
	if err != nil {
		t.Fatalf("helm install: %v\n%s\n%s", err, out, podsWide(t, c, ""))
	}
	t.Logf("helm install --wait: %s\n%s", time.Since(start).Round(time.Millisecond), lastLines(out, 6))
	t.Logf("pods:\n%s", podsWide(t, c, ""))

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
		t.Errorf("builder agent pods: %v, %+v", err, agents)
	}
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
