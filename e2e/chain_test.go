package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

const (
	buildNS      = "promoter-builds"
	githubSecret = "e2e-github-secret"
)

// TestGitHubPushToPromotedIndex is the whole chain of issues 6 and 11 against a real
// kube-apiserver, real NATS JetStream, real registries and real rootless BuildKit: a GitHub
// push webhook naming a git repository served on loopback makes the daemon dispatch one
// build per platform; a builder agent with only its namespaced Role creates one Job each;
// the node (testenv.Node) runs each Job's container as written, so BuildKit builds the
// Dockerfile from the git revision and pushes the arch tag to staging with the mounted
// registry Secret; the pushes are merged, signed and promoted, the promoted index verifies,
// and the promoted images hold what the Dockerfile built.
func TestGitHubPushToPromotedIndex(t *testing.T) {
	kube := testenv.StartKube(t)
	builderClient := builderNamespace(t, kube)
	bk := testenv.NewBuildKit(t)
	gitsrv := testenv.StartGitServer(t)
	nats := testenv.StartNATS(t)
	stagingPort := testenv.FreePort(t)
	stagingHost := fmt.Sprintf("127.0.0.1:%d", stagingPort)
	staging := stagingHost + "/acme/app"
	base := stagingHost + "/base/busybox:1"
	prod := testenv.StartRegistry(t)
	dest := prod.Host + "/acme/app"
	dest2 := testenv.StartRegistry(t).Host + "/mirror/app"
	dir := t.TempDir()
	keyPath, pubPath := writeKeyPair(t, dir, "pw")

	// RUN only for linux/amd64 (there is no emulation); linux/arm64 copies a file from
	// the context into scratch. BuildKit builds only the stage the target platform needs.
	repo, rev := gitsrv.CreateRepo(t, "app", map[string]string{
		"Dockerfile": chainDockerfile(base, "RUN echo \"built for $TARGETPLATFORM\" > /built && echo $$ > /pid"),
		"hello.txt":  "hello from git\n",
	})

	d := startDaemon(t, newDaemonConfig(t, withNATS(nats.URL), withGitHubSecret(githubSecret), withSigningKey(keyPath, "pw"), withReconcile("1h"), withBuilder(buildNS, 2),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: repo, Branch: "main"}, Platforms: bothArches, Staging: staging,
			Sign: true, Promote: signedTo(dest, dest2),
		})))
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))
	testenv.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))
	registrySecret(t, kube.Client, stagingHost)

	// The builder agent, as `promoter builder` runs it, with the restricted user.
	startAgent(t, builderClient, nats.URL, 2, "linux/amd64", "linux/arm64")

	node := testenv.StartNode(t, kube.Client, buildNS, bk)
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range node.Runs() {
				t.Logf("node ran %s: exit %d after %s\n%s", r.Job, r.ExitCode, r.Took.Round(time.Millisecond), lastLines(r.Output, 30))
			}
		}
	})

	delivery := "11111111-2222-3333-4444-555555555555"
	githubPush(t, d.URL, repo, delivery, rev)

	jobs := waitJobs(t, kube.Client, rev, 2, 60*time.Second)
	for _, j := range jobs {
		checkJobSpec(t, j)
	}
	r := d.waitPhase(t, "app", rev, 4*time.Minute, types.PhasePromoted)
	checkChainState(t, r, dest, dest2)
	for _, run := range node.Runs() {
		t.Logf("node ran %s in %s; last lines:\n%s", run.Job, run.Took.Round(time.Millisecond), lastLines(strings.TrimRight(run.Output, "\n"), 6))
	}
	checkChainVerifies(t, pubPath, rev, r.Index, dest, dest2)
	// What BuildKit built, read back from the promoted index.
	checkChainBuilt(t, dest, rev)

	t.Run("the same webhook delivered twice creates each Job once", func(t *testing.T) {
		checkChainRedelivery(t, d, kube.Client, repo, delivery, rev)
	})
	t.Run("a failing build is retried, then the revision fails with BuildKit's error", func(t *testing.T) {
		bad := gitsrv.Commit(t, "app", map[string]string{
			"Dockerfile": chainDockerfile(base, "RUN echo \"make: *** No rule to make target 'all'.\" >&2; exit 1"),
		})
		checkChainFailedBuild(t, d, kube.Client, repo, bad)
	})
}

// checkChainState checks that promoted revision r is signed, promoted to dest and dest2
// with its index, and that each platform's build succeeded.
func checkChainState(t *testing.T, r *types.Revision, dest, dest2 string) {
	t.Helper()
	if !r.Signed || !r.Promotions[dest].Done || r.Promotions[dest].Digest != r.Index || r.Promotions[dest2].Digest != r.Index {
		t.Fatalf("state: %+v", r)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if r.Platforms[p].Build != types.BuildSucceeded {
			t.Errorf("%s build: %+v", p, r.Platforms[p])
		}
	}
}

// checkChainVerifies checks, at each of dests, that revision rev's promoted index
// (digest index) verifies with promoter's public key pubPath, that it keeps BuildKit's
// provenance, and that the real cosign CLI verifies the index and each image.
func checkChainVerifies(t *testing.T, pubPath, rev, index string, dests ...string) {
	t.Helper()
	key, err := sign.LoadVerifier(context.Background(), pubPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dests {
		checked, err := testenv.Verifier(t, key).Verify(context.Background(), d+":"+rev)
		if err != nil || len(checked) != 3 {
			t.Fatalf("promoted index does not verify at %s: %v %+v", d, err, checked)
		}
	}

	// BuildKit attached provenance (build.provenance defaults to mode=min, as buildx), so
	// each arch tag was an index of the image and its attestation manifest: the merged
	// index keeps each attestation next to its image, and promotion copies them.
	for _, d := range dests {
		checkProvenance(t, d, rev)
	}
	// And the real cosign CLI verifies the index and each image at each destination.
	cosign := testenv.Tool(t, "cosign")
	for _, d := range dests {
		kids := testenv.IndexChildren(t, d+":"+rev)
		for _, dg := range []string{index, kids["linux/amd64"], kids["linux/arm64"]} {
			cosignVerify(t, cosign, pubPath, d+"@"+dg)
		}
	}
}

// checkChainBuilt checks what BuildKit built, read back from the index rev promoted to
// dest: the amd64 image holds the RUN step's output, run without a PID namespace of its
// own, and the arm64 image is linux/arm64, labelled with rev, and holds the file from git.
func checkChainBuilt(t *testing.T, dest, rev string) {
	t.Helper()
	children := testenv.IndexChildren(t, dest+":"+rev)
	amd := promotedImage(t, dest, children["linux/amd64"])
	if got, err := fileInImage(amd, "built"); err != nil || got != "built for linux/amd64\n" {
		t.Errorf("linux/amd64 /built: got %q (%v), want the RUN step's output", got, err)
	}
	// This machine, unlike an unprivileged pod, could give each RUN its own PID namespace
	// (the shell would be PID 1), so a Job that lost
	// BUILDKITD_FLAGS=--oci-worker-no-process-sandbox would still build here: catch it
	// by the PID the RUN step saw.
	if got, err := fileInImage(amd, "pid"); err != nil || got == "1\n" {
		t.Errorf("linux/amd64 RUN step's PID: got %q (%v); it ran in a PID namespace of its own, as it cannot in an unprivileged pod: is BUILDKITD_FLAGS=--oci-worker-no-process-sandbox missing from the Job?", got, err)
	}
	arm := promotedImage(t, dest, children["linux/arm64"])
	if cf, err := arm.ConfigFile(); err != nil || cf.OS+"/"+cf.Architecture != "linux/arm64" {
		t.Errorf("linux/arm64 config: %+v (%v), want linux/arm64", cf, err)
	} else if cf.Config.Labels["org.opencontainers.image.revision"] != rev {
		t.Errorf("linux/arm64 revision label: %v, want %s", cf.Config.Labels, rev)
	}
	if got, err := fileInImage(arm, "hello.txt"); err != nil || got != "hello from git\n" {
		t.Errorf("linux/arm64 /hello.txt: got %q (%v), want the file from git", got, err)
	}
}

// checkChainRedelivery delivers the push of rev on repo again, once as delivery (already
// seen) and once as a new delivery, and checks that both are answered as duplicates and
// that rev still has its two Jobs.
func checkChainRedelivery(t *testing.T, d *runningDaemon, c kubernetes.Interface, repo, delivery, rev string) {
	t.Helper()
	dups := testutil.ToFloat64(d.Metrics.EventsReceived.WithLabelValues("github", "push", "duplicate", ""))
	githubPush(t, d.URL, repo, delivery, rev)                               // same delivery: de-duplicated by JetStream
	githubPush(t, d.URL, repo, "99999999-2222-3333-4444-555555555555", rev) // a new delivery of the same revision
	// A source change is stored once per pipeline and revision: both are answered as
	// duplicates, so nothing was queued that could create a Job later.
	if got := testutil.ToFloat64(d.Metrics.EventsReceived.WithLabelValues("github", "push", "duplicate", "")) - dups; got != 2 {
		t.Fatalf("%v of the two deliveries were duplicates, want 2", got)
	}
	if got := listJobs(t, c, rev); len(got) != 2 {
		t.Fatalf("%d jobs for %s, want 2", len(got), rev)
	}
}

// checkChainFailedBuild pushes bad, a revision of repo whose amd64 RUN step fails, and
// checks that its build was attempted twice, then failed the revision with BuildKit's
// error in the reason and in a log line.
func checkChainFailedBuild(t *testing.T, d *runningDaemon, c kubernetes.Interface, repo, bad string) {
	t.Helper()
	githubPush(t, d.URL, repo, "bad-delivery", bad)
	r := d.waitPhase(t, "app", bad, 4*time.Minute, types.PhaseFailed)
	t.Logf("failure reason: %s", r.Reason)
	for _, want := range []string{"linux/amd64", "after 2 attempts", "No rule to make target", "did not complete successfully: exit code: 1"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q does not say %q", r.Reason, want)
		}
	}
	var amd int
	for _, j := range listJobs(t, c, bad) {
		if j.Spec.Template.Spec.NodeSelector["kubernetes.io/arch"] == "amd64" {
			amd++
		}
	}
	if amd != 2 {
		t.Errorf("%d amd64 jobs, want 2 (one per attempt)", amd)
	}
	if !d.Logs.Contains("build failed for good", bad) {
		t.Errorf("no log line for the failed build")
	}
}

// chainDockerfile builds linux/amd64 on base with step (a RUN) and linux/arm64 from scratch
// with hello.txt from the context.
func chainDockerfile(base, step string) string {
	return fmt.Sprintf(`FROM %s AS build-amd64
ARG TARGETPLATFORM
%s

FROM scratch AS build-arm64
COPY hello.txt /hello.txt

FROM build-${TARGETARCH}
`, base, step)
}

// checkProvenance checks that the index repo:rev holds, for each of its platform images, a
// BuildKit attestation manifest that refers to it and carries a SLSA provenance layer
// readable in repo.
func checkProvenance(t *testing.T, repo, rev string) {
	t.Helper()
	ref, err := name.ParseReference(repo+":"+rev, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("reading %s: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	images, attested := map[string]bool{}, map[string]bool{}
	for _, m := range im.Manifests {
		if m.Annotations["vnd.docker.reference.type"] != "attestation-manifest" {
			images[m.Digest.String()] = true
			continue
		}
		attested[m.Annotations["vnd.docker.reference.digest"]] = true
		att, err := remote.Image(ref.Context().Digest(m.Digest.String()))
		if err != nil {
			t.Fatalf("%s: attestation %s: %v", repo, m.Digest, err)
		}
		am, err := att.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		var provenance bool
		for _, l := range am.Layers {
			if strings.HasPrefix(l.Annotations["in-toto.io/predicate-type"], "https://slsa.dev/provenance/") {
				blob, err := remote.Layer(ref.Context().Digest(l.Digest.String()))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := blob.Compressed(); err != nil {
					t.Errorf("%s: provenance layer %s: %v", repo, l.Digest, err)
				}
				provenance = true
			}
		}
		if !provenance {
			t.Errorf("%s: attestation %s has no SLSA provenance layer: %+v", repo, m.Digest, am.Layers)
		}
	}
	if len(images) != 2 {
		t.Errorf("%s:%s: %d images, want 2", repo, rev, len(images))
	}
	for d := range images {
		if !attested[d] {
			t.Errorf("%s:%s: image %s has no attestation manifest in the index", repo, rev, d)
		}
	}
}

// registrySecret creates the builder's registry Secret (builder.registrySecret's default
// name), a docker config naming the staging registry; the loopback registry asks for no
// credentials, so they are never sent.
func registrySecret(t *testing.T, c kubernetes.Interface, host string) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("ci:unused"))},
	}})
	if _, err := c.CoreV1().Secrets(buildNS).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials", Namespace: buildNS},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func promotedImage(t *testing.T, repo, digest string) v1.Image {
	t.Helper()
	ref, err := name.ParseReference(repo+"@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("reading %s: %v", ref, err)
	}
	return img
}

// fileInImage returns the content of path (no leading slash) in the topmost layer of img
// that has it.
func fileInImage(img v1.Image, path string) (string, error) {
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	var errs []error
	for i := len(layers) - 1; i >= 0; i-- {
		got, err := fileInLayer(layers[i], path)
		if err == nil {
			return got, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
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
	err = testenv.WaitFor(10*time.Second, func() error {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: buildNS, Verb: "create", Group: "batch", Resource: "jobs",
			}},
		}, metav1.CreateOptions{})
		if err == nil && !r.Status.Allowed {
			err = errors.New("not allowed yet")
		}
		return err
	})
	if err != nil {
		t.Fatalf("builder user may not create jobs: %v", err)
	}
	return c
}

// githubPush sends GitHub's push webhook of rev on repo's main branch, signed with
// githubSecret, and returns the daemon's summary of it.
func githubPush(t *testing.T, daemonURL, repo, delivery, rev string) events.Summary {
	t.Helper()
	return githubPushVia(t, http.DefaultClient, daemonURL, repo, delivery, rev)
}

// githubPushVia is githubPush through client.
func githubPushVia(t *testing.T, client *http.Client, daemonURL, repo, delivery, rev string) events.Summary {
	t.Helper()
	return postGitHubVia(t, client, daemonURL, delivery, map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": rev, "deleted": false,
		"repository": map[string]any{"full_name": "acme/app", "html_url": repo, "clone_url": repo},
	})
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
	var js []batchv1.Job
	err := testenv.WaitFor(timeout, func() error {
		if js = listJobs(t, c, rev); len(js) < n {
			return fmt.Errorf("%d jobs", len(js))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fewer than %d jobs for %s after %s", n, rev, timeout)
	}
	return js
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
