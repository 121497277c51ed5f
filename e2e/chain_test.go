package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

const (
	buildNS      = "promoter-builds"
	githubSecret = "e2e-github-secret"
	sourceRepo   = "https://github.com/acme/app"
)

// TestGitHubPushToPromotedIndex is the whole chain of issue 6 against a real kube-apiserver,
// real NATS JetStream and real registries: a GitHub push webhook makes the daemon dispatch
// one build per platform; a builder agent with only its namespaced Role creates one Job
// each; the test plays the node (builds with the local executor, marks the Job complete);
// the pushes are merged, signed and promoted, and the promoted index verifies.
func TestGitHubPushToPromotedIndex(t *testing.T) {
	kube := testenv.StartKube(t)
	builderClient := builderNamespace(t, kube)
	nats := testenv.StartNATS(t)
	stagingPort := testenv.FreePort(t)
	staging := fmt.Sprintf("127.0.0.1:%d/acme/app", stagingPort)
	prod := testenv.StartRegistry(t)
	dest := prod.Host + "/acme/app"
	dest2 := testenv.StartRegistry(t).Host + "/mirror/app"
	dir := t.TempDir()
	keyPath, pubPath := writeKeyPair(t, dir, "pw")

	d := startDaemon(t, yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
	github:
		secret: %s
keys:
	cosign: %s
	password: pw
reconcileInterval: 1h
builder:
	namespace: %s
	maxAttempts: 2
pipelines:
	- name: app
		source: {repo: %s, branch: main}
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		promote:
			- to: %s
				requireSignature: true
			- to: %s
				requireSignature: true
`, nats.URL, registryToken, githubSecret, keyPath, buildNS, sourceRepo, staging, dest, dest2))
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), stagingPort,
		testenv.WithNotifications(d.URL+"/v1/events/registry", notifyHeaders()))

	// The builder agent, as `promoter builder` runs it, with the restricted user.
	agentCfg, err := config.Load(config.Input{})
	if err != nil {
		t.Fatal(err)
	}
	agentCfg.NATS.URL, agentCfg.Metrics = nats.URL, ""
	agentCfg.Builder.Namespace, agentCfg.Builder.MaxAttempts = buildNS, 2
	agentCfg.Builder.Platforms = []string{"linux/amd64", "linux/arm64"}
	exec, err := builders.NewKubernetes(builderClient, agentCfg.Builder)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- builders.RunAgent(ctx, agentCfg, exec, builders.WithRetryDelay(200*time.Millisecond))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	})

	node := startNode(t, kube.Client, filepath.Join("..", "examples", "hello"))

	rev := strings.Repeat("a1", 20)
	delivery := "11111111-2222-3333-4444-555555555555"
	githubPush(t, d.URL, delivery, rev)

	jobs := waitJobs(t, kube.Client, rev, 2, 60*time.Second)
	for _, j := range jobs {
		checkJobSpec(t, j)
	}
	r := d.waitPhase(t, "app", rev, 90*time.Second, types.PhasePromoted)
	if !r.Signed || !r.Promotions[dest].Done || r.Promotions[dest].Digest != r.Index || r.Promotions[dest2].Digest != r.Index {
		t.Fatalf("state: %+v", r)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if r.Platforms[p].Build != types.BuildSucceeded {
			t.Errorf("%s build: %+v", p, r.Platforms[p])
		}
	}
	key, err := sign.LoadVerifier(context.Background(), pubPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dest, dest2} {
		checked, err := (&sign.Verifier{Key: key, Registry: registry.Client{}}).Verify(context.Background(), d+":"+rev)
		if err != nil || len(checked) != 3 {
			t.Fatalf("promoted index does not verify at %s: %v %+v", d, err, checked)
		}
	}

	t.Run("the same webhook delivered twice creates each Job once", func(t *testing.T) {
		githubPush(t, d.URL, delivery, rev)                               // same delivery: de-duplicated by JetStream
		githubPush(t, d.URL, "99999999-2222-3333-4444-555555555555", rev) // a new delivery of the same revision
		time.Sleep(2 * time.Second)
		if got := listJobs(t, kube.Client, rev); len(got) != 2 {
			t.Fatalf("%d jobs for %s, want 2", len(got), rev)
		}
	})

	t.Run("a failing build is retried, then the revision fails with the reason", func(t *testing.T) {
		bad := strings.Repeat("b2", 20)
		node.fail(bad, "linux/arm64", "BuildFailed", "exit code 1: RUN make: no rule to make target")
		githubPush(t, d.URL, "bad-delivery", bad)
		r := d.waitPhase(t, "app", bad, 90*time.Second, types.PhaseFailed)
		if !strings.Contains(r.Reason, "linux/arm64") || !strings.Contains(r.Reason, "after 2 attempts") || !strings.Contains(r.Reason, "no rule to make target") {
			t.Errorf("reason: %q", r.Reason)
		}
		var arm int
		for _, j := range listJobs(t, kube.Client, bad) {
			if j.Spec.Template.Spec.NodeSelector["kubernetes.io/arch"] == "arm64" {
				arm++
			}
		}
		if arm != 2 {
			t.Errorf("%d arm64 jobs, want 2 (one per attempt)", arm)
		}
		if !d.Logs.Contains("build failed for good", bad) {
			t.Errorf("no log line for the failed build")
		}
	})
}

// builderNamespace creates the build namespace with its Pod Security label and the agent's
// Role bound to the "builder" user, and returns that user's client.
func builderNamespace(t *testing.T, k *testenv.Kube) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: buildNS, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := builders.Role(buildNS)
	if _, err := k.Client.RbacV1().Roles(buildNS).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Client.RbacV1().RoleBindings(buildNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: buildNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "builder"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(k.UserConfig(t, "builder"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: buildNS, Verb: "create", Group: "batch", Resource: "jobs",
			}},
		}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("builder user may not create jobs: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeNode plays the kubelet and the Job controller: for each new build Job it builds the
// image with the local executor and pushes it where the Job would, then marks the Job
// complete; or marks it failed when told to.
type fakeNode struct {
	t        *testing.T
	c        kubernetes.Interface
	local    *builders.Local
	mu       sync.Mutex
	failures map[string][2]string // revision/platform → reason, message
}

func startNode(t *testing.T, c kubernetes.Interface, source string) *fakeNode {
	local, err := builders.NewLocal(registry.Client{}, []config.Pipeline{{
		Name: "app", Build: config.Build{Executor: "local", Dir: source},
	}})
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{t: t, c: c, local: local, failures: map[string][2]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.BatchV1().Jobs(buildNS).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
				go n.run(ctx, j)
			}
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return n
}

func (n *fakeNode) fail(rev, platform, reason, message string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failures[rev+"/"+platform] = [2]string{reason, message}
}

func (n *fakeNode) run(ctx context.Context, j *batchv1.Job) {
	sel := j.Spec.Template.Spec.NodeSelector
	p := types.Platform{OS: sel["kubernetes.io/os"], Architecture: sel["kubernetes.io/arch"]}
	rev := j.Annotations["promoter.dev/revision"]
	n.mu.Lock()
	f, failing := n.failures[rev+"/"+p.String()]
	n.mu.Unlock()
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	start := metav1.NewTime(now.Add(-time.Second))
	if failing {
		j.Status = batchv1.JobStatus{StartTime: &start, Failed: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: f[0], Message: f[1], LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: f[0], Message: f[1], LastTransitionTime: now},
		}}
	} else {
		req := types.BuildRequest{Pipeline: j.Labels[builders.LabelPipeline], Revision: rev, Platform: p, Image: j.Annotations["promoter.dev/image"]}
		if _, err := n.local.Build(ctx, req, 1); err != nil {
			n.t.Errorf("node: building %s: %v", req.Image, err)
			return
		}
		j.Status = batchv1.JobStatus{StartTime: &start, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now},
		}}
	}
	if _, err := n.c.BatchV1().Jobs(buildNS).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		n.t.Errorf("node: job status %s: %v", j.Name, err)
	}
}

func githubPush(t *testing.T, daemonURL, delivery, rev string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": rev, "deleted": false,
		"repository": map[string]any{"full_name": "acme/app", "html_url": sourceRepo, "clone_url": sourceRepo + ".git"},
	})
	mac := hmac.New(sha256.New, []byte(githubSecret))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, daemonURL+"/v1/events/source/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		t.Fatalf("github webhook: %s", resp.Status)
	}
}

func listJobs(t *testing.T, c kubernetes.Interface, rev string) []batchv1.Job {
	t.Helper()
	l, err := c.BatchV1().Jobs(buildNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []batchv1.Job
	for _, j := range l.Items {
		if j.Annotations["promoter.dev/revision"] == rev {
			out = append(out, j)
		}
	}
	return out
}

func waitJobs(t *testing.T, c kubernetes.Interface, rev string, n int, timeout time.Duration) []batchv1.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if js := listJobs(t, c, rev); len(js) >= n {
			return js
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("fewer than %d jobs for %s after %s", n, rev, timeout)
	return nil
}

// checkJobSpec asserts what the apiserver stored: rootless, native arch, bounded.
func checkJobSpec(t *testing.T, j batchv1.Job) {
	t.Helper()
	ps := j.Spec.Template.Spec
	arch := ps.NodeSelector["kubernetes.io/arch"]
	if arch != "amd64" && arch != "arm64" {
		t.Errorf("%s: nodeSelector %v", j.Name, ps.NodeSelector)
	}
	tolerated := false
	for _, tol := range ps.Tolerations {
		tolerated = tolerated || (tol.Key == "kubernetes.io/arch" && tol.Value == arch && tol.Effect == corev1.TaintEffectNoSchedule)
	}
	if !tolerated {
		t.Errorf("%s: no kubernetes.io/arch=%s NoSchedule toleration: %+v", j.Name, arch, ps.Tolerations)
	}
	for _, c := range append(ps.InitContainers, ps.Containers...) {
		if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: container %s is privileged", j.Name, c.Name)
		}
	}
	if j.Spec.ActiveDeadlineSeconds == nil || *j.Spec.ActiveDeadlineSeconds <= 0 {
		t.Errorf("%s: no activeDeadlineSeconds", j.Name)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser != 1000 {
		t.Errorf("%s: not running as UID 1000: %+v", j.Name, ps.SecurityContext)
	}
}
