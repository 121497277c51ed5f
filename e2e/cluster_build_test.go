package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestClusterBuildJob runs the builder agent's real build Job on a real node: the
// Kubernetes executor renders the default Job template (job.yaml.tmpl) for a build request,
// creates the Job in the one-node cluster and waits for it, and kubelet runs the pod with
// the rootless BuildKit image the project assembles (testenv.RootlessBuildKitImage) as
// the template says: user 1000, seccomp and AppArmor Unconfined, no privilege. The pod
// builds a Dockerfile with a RUN step from a git revision served over smart HTTP inside
// the cluster's network namespace and pushes to the node's registry; the digest the pod
// reported in its termination message must be what the registry holds.
//
// The pod spec is then checked against reality: the same Job without
// --oci-worker-no-process-sandbox, and with the seccomp profile RuntimeDefault, must fail,
// and the agent's error must name the cause.
func TestClusterBuildJob(t *testing.T) {
	c := testenv.StartKubeCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	reg := c.Registry.Host
	regClient := remote.WithTransport(&http.Transport{DialContext: c.Netns.DialContext})

	start := time.Now()
	bkImage := reg + "/buildkit:" + testenv.BuildKitVersion + "-rootless"
	// The node's registry speaks plain HTTP. The default Job template mounts no
	// buildkitd.toml, so the image carries it.
	c.Push(t, bkImage, testenv.RootlessBuildKitImage(t, reg))
	base := reg + "/base:busybox"
	c.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))
	t.Logf("rootless BuildKit image assembled and pushed to %s in %s", bkImage, time.Since(start).Round(time.Millisecond))

	gitsrv := testenv.StartGitServer(t)
	_, sha := gitsrv.CreateRepo(t, "app", map[string]string{
		"Dockerfile": fmt.Sprintf("FROM %s\nRUN echo built > /built\n", base),
	})
	repoURL := serveGitOnNode(t, c, gitsrv.Root) + "/app.git"

	const ns = builders.DefaultNamespace
	createBuildNamespace(ctx, t, c, ns)

	tmpl, err := os.ReadFile(filepath.Join("..", "internal", "builders", "job.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	request := func(pipeline string) types.BuildRequest {
		return types.BuildRequest{
			Pipeline:   pipeline,
			Revision:   sha,
			Platform:   types.MustPlatform("linux/amd64"),
			SourceRepo: repoURL,
			Context:    ".",
			Dockerfile: "Dockerfile",
			Image:      fmt.Sprintf("%s/acme/%s:%s-amd64", reg, pipeline, sha[:12]),
			Provenance: builders.DefaultProvenance,
		}
	}
	executor := func(t *testing.T, template string) *builders.Kubernetes {
		settings := builders.JobSettings{
			Namespace: ns, Image: bkImage, RegistrySecret: builders.DefaultRegistrySecret,
			Deadline: 5 * time.Minute, TTL: time.Hour, HostUsers: true,
		}
		if template != "" {
			settings.JobTemplate = filepath.Join(t.TempDir(), "job.yaml.tmpl")
			if err := os.WriteFile(settings.JobTemplate, []byte(template), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		k, err := builders.NewKubernetes(c.Client, settings,
			builders.WithLogger(slog.New(slog.NewTextHandler(testLogWriter{t}, nil))))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	t.Run("builds and pushes", func(t *testing.T) {
		req := request("app")
		req.Cache = &types.BuildCache{Ref: reg + "/acme/app:buildcache-linux-amd64", Mode: builders.DefaultCacheMode}
		start := time.Now()
		built, err := executor(t, "").Build(ctx, req, 1)
		took := time.Since(start)
		pod := jobPod(ctx, t, c, ns, built.Job)
		t.Logf("job %s: %s; pod %s on %s, %s", built.Job, took.Round(time.Millisecond), pod.Name, pod.Spec.NodeName, podTimes(pod))
		t.Logf("BuildKit log of pod %s:\n%s", pod.Name, podLog(ctx, t, c, pod))
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		msg := terminationMessage(pod)
		if d, ok := builders.ReportedDigest(msg); !ok || d != built.Digest {
			t.Errorf("termination message %q: got digest %q, want %s", msg, d, built.Digest)
		}
		ref, err := name.ParseReference(req.Image, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref, regClient)
		if err != nil {
			t.Fatalf("the registry does not hold %s: %v", req.Image, err)
		}
		if got := desc.Digest.String(); got != built.Digest {
			t.Errorf("%s: registry has %s, the pod reported %s", req.Image, got, built.Digest)
		}
		t.Logf("%s is %s (%s), as the pod reported", req.Image, desc.Digest, desc.MediaType)
		img, err := remote.Image(ref, regClient, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := fileInLayer(layers[len(layers)-1], "built"); err != nil || got != "built\n" {
			t.Errorf("the RUN layer's /built: got %q (%v), want %q", got, err, "built\n")
		}
	})

	// What the issue asks of the pod spec: each setting the template has for a reason
	// fails the build, with a reason that names it, when it is taken away.
	tests := []struct {
		name     string
		pipeline string
		// edit changes the default template; it must change something.
		edit func(string) string
		// wantCause are parts of the agent's error that name the cause and what to set.
		wantCause []string
	}{
		{
			name:     "without --oci-worker-no-process-sandbox",
			pipeline: "sandboxed",
			edit: func(s string) string {
				return strings.Replace(s, "value: --oci-worker-no-process-sandbox", `value: ""`, 1)
			},
			wantCause: []string{"set BUILDKITD_FLAGS=--oci-worker-no-process-sandbox", "mount proc:/proc", "operation not permitted"},
		},
		{
			name:     "seccomp RuntimeDefault",
			pipeline: "seccomp",
			edit: func(s string) string {
				return seccompUnconfined.ReplaceAllString(s, "${1}RuntimeDefault")
			},
			wantCause: []string{"needs seccompProfile (and appArmorProfile) type Unconfined", "fork/exec /proc/self/exe: operation not permitted"},
		},
	}
	t.Run("fails", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				edited := tt.edit(string(tmpl))
				if edited == string(tmpl) {
					t.Fatal("the edit changed nothing in job.yaml.tmpl")
				}
				start := time.Now()
				built, err := executor(t, edited).Build(ctx, request(tt.pipeline), 1)
				took := time.Since(start)
				pod := jobPod(ctx, t, c, ns, built.Job)
				t.Logf("job %s: %s; pod %s, %s", built.Job, took.Round(time.Millisecond), pod.Name, podTimes(pod))
				t.Logf("log of pod %s:\n%s", pod.Name, podLog(ctx, t, c, pod))
				var failed *builders.JobFailedError
				if !errors.As(err, &failed) {
					t.Fatalf("got %v, want a *builders.JobFailedError", err)
				}
				t.Logf("the agent's error: %v", err)
				t.Logf("its Cause: %q", failed.Cause)
				// The pod's log tail (its termination message, by FallbackToLogsOnError)
				// holds the cause; the agent's error (what the revision's status shows)
				// names it and what to set.
				for _, want := range tt.wantCause {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the agent's error does not name the cause %q", want)
					}
				}
			})
		}
	})
}

// seccompUnconfined finds the template's seccomp profiles (pod and container).
var seccompUnconfined = regexp.MustCompile(`(seccompProfile:\s*\n\s*type: )Unconfined`)

// serveGitOnNode serves the bare repositories under root over git's smart HTTP protocol,
// through the real `git http-backend`, on the node IP inside the cluster's namespace,
// where pods reach it, until the test ends. It returns the base URL,
// http://NODE_IP:PORT.
func serveGitOnNode(t *testing.T, c *testenv.KubeCluster, root string) string {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		testenv.Require(t, "git not on PATH (run `bash hack/buildkit.sh` to install it)")
	}
	ln, err := c.Netns.Listen("tcp", c.NodeIP+":0")
	if err != nil {
		t.Fatalf("listening for git on the node: %v", err)
	}
	srv := &http.Server{Handler: &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
		},
		InheritEnv: []string{"PATH"},
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// createBuildNamespace makes the builder namespace as the chart does (Pod Security
// "privileged": the build pods' seccomp and AppArmor profiles are Unconfined) with an empty
// registry-credentials Secret, which the Job mounts as ~/.docker/config.json.
func createBuildNamespace(ctx context.Context, t *testing.T, c *testenv.KubeCluster, ns string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: builders.DefaultRegistrySecret},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// jobPod is the pod of Job job: an empty one, with the error in the test log, when there
// is not exactly one (the caller's own checks say what went wrong).
func jobPod(ctx context.Context, t *testing.T, c *testenv.KubeCluster, ns, job string) *corev1.Pod {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	switch {
	case err != nil:
		t.Errorf("listing the pods of job %s: %v", job, err)
	case len(pods.Items) != 1:
		t.Errorf("job %s has %d pods, want 1", job, len(pods.Items))
	default:
		return &pods.Items[0]
	}
	return &corev1.Pod{}
}

// podLog is the build container's log, read through the apiserver from the kubelet.
func podLog(ctx context.Context, t *testing.T, c *testenv.KubeCluster, pod *corev1.Pod) string {
	t.Helper()
	if pod.Name == "" {
		return ""
	}
	b, err := c.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "buildkit"}).DoRaw(ctx)
	if err != nil {
		t.Errorf("reading the log of pod %s: %v", pod.Name, err)
	}
	return strings.TrimRight(string(b), "\n")
}

func terminationMessage(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Terminated != nil {
			return cs.State.Terminated.Message
		}
	}
	return ""
}

// podTimes says when the pod's container ran, from the kubelet's status.
func podTimes(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if st := cs.State.Terminated; st != nil {
			return fmt.Sprintf("container ran %s (exit %d, %s), %s after the pod was created",
				st.FinishedAt.Sub(st.StartedAt.Time), st.ExitCode, st.Reason, st.StartedAt.Sub(pod.CreationTimestamp.Time))
		}
	}
	return "phase " + string(pod.Status.Phase)
}

// testLogWriter writes the agent's log lines to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
