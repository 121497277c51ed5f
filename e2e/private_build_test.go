package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/daemon"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPrivateRepositoryBuilds runs the build settings of issue 11 through the real chain
// (GitHub webhook → agent → Job → rootless BuildKit → registry → merge), with a git server
// and registries that all demand credentials:
//   - a private repository over https (TLS) with a token (BuildKit's GIT_AUTH_TOKEN) and over ssh
//     with a key (--ssh), both from mounted Secrets, from a subdirectory context, at a
//     commit that is not the branch head;
//   - a build argument and a build secret reach the RUN steps, the secret never the image;
//   - the second revision reuses the first one's RUN step from the registry build cache;
//   - each failure says what to fix: no credentials, a Secret that does not exist, no
//     Dockerfile, an unknown revision, a registry that refuses the push;
//   - no credential appears in a Job, the daemon's log or BuildKit's output.
func TestPrivateRepositoryBuilds(t *testing.T) {
	const (
		gitToken  = "e2e-git-token-7d1f"
		ciToken   = "e2e-ci-job-token-93ab"
		regUser   = "ci"
		regPass   = "e2e-registry-pass-51c0"
		greeting  = "hello from build.args"
		lockedFor = "someone-else"
	)
	kube := testenv.StartKube(t)
	builderClient := builderNamespace(t, kube)
	bk := testenv.NewBuildKit(t)
	gitsrv := testenv.StartGitServer(t)
	gitHTTP := gitsrv.ServeHTTPS(t, gitToken)
	gitHTTP.TrustInNewRepos(t)
	gitSSH := gitsrv.ServeSSH(t)
	nats := testenv.StartNATS(t)

	// Staging wants a login, which the Jobs' registry Secret and the daemon have. "locked"
	// wants one the Jobs do not have: the daemon may look (so it dispatches), BuildKit may
	// not push.
	stagingPort := testenv.FreePort(t)
	stagingHost := fmt.Sprintf("127.0.0.1:%d", stagingPort)
	locked := testenv.StartRegistry(t, localregistry.WithBasicAuth(lockedFor, regPass))
	useDockerConfig(t, map[string][2]string{stagingHost: {regUser, regPass}, locked.Host: {lockedFor, regPass}})
	base := stagingHost + "/base/busybox:1"

	// The expensive step comes before the build argument and the late file, so a change
	// to either leaves it cached.
	dockerfile := fmt.Sprintf(`FROM %s
RUN echo "expensive step" && echo $$ > /expensive
ARG GREETING
RUN --mount=type=secret,id=ci_token,required=true echo "$GREETING" > /greeting && sha256sum /run/secrets/ci_token | cut -d' ' -f1 > /token.sha256
COPY late.txt /late.txt
`, base)
	_, rev1 := gitsrv.CreateRepo(t, "private", map[string]string{
		"app/Dockerfile": dockerfile, "app/late.txt": "one\n", "README": "the context is app/\n",
	})
	rev2 := gitsrv.Commit(t, "private", map[string]string{"app/late.txt": "two\n"})
	simple := fmt.Sprintf("FROM %s\nRUN echo ok > /ok\n", base)
	_, anonRev := gitsrv.CreateRepo(t, "anonymous", map[string]string{"Dockerfile": simple})
	_, missingRev := gitsrv.CreateRepo(t, "missing-secret", map[string]string{"Dockerfile": simple})
	_, noDockerfileRev := gitsrv.CreateRepo(t, "no-dockerfile", map[string]string{"Dockerfile": simple})
	_, deniedRev := gitsrv.CreateRepo(t, "denied", map[string]string{"Dockerfile": simple})
	unknownRev := strings.Repeat("0123456789", 4)

	privateHTTP, privateSSH := gitHTTP.URL("private"), gitSSH.SCPURL("private")
	d := startDaemon(t, newDaemonConfig(t, withNATS(nats.URL), withGitHubSecret(githubSecret), withReconcile("1h"), withBuilder(buildNS, 0),
		withPipeline(pipelineConfig{
			Name: "private", Source: &sourceConfig{Repo: privateHTTP}, Platforms: []string{"linux/amd64"}, Staging: stagingHost + "/acme/private",
			Build: &buildConfig{Context: "app", GitSecret: "git-token", Args: []string{"GREETING=" + greeting}, Secrets: []buildSecret{{ID: "ci_token", Secret: "ci-token", Key: "token"}}},
		}),
		withPipeline(pipelineConfig{
			Name: "private-ssh", Source: &sourceConfig{Repo: privateSSH}, Platforms: []string{"linux/amd64"}, Staging: stagingHost + "/acme/private-ssh",
			Build: &buildConfig{Context: "app", GitSecret: "git-ssh", Args: []string{"GREETING=" + greeting}, Secrets: []buildSecret{{ID: "ci_token", Secret: "ci-token", Key: "token"}}},
		}),
		withPipeline(pipelineConfig{Name: "anonymous", Source: &sourceConfig{Repo: gitHTTP.URL("anonymous")}, Platforms: []string{"linux/amd64"}, Staging: stagingHost + "/acme/anonymous"}),
		withPipeline(pipelineConfig{
			Name: "missing-secret", Source: &sourceConfig{Repo: gitHTTP.URL("missing-secret")}, Platforms: []string{"linux/amd64"}, Staging: stagingHost + "/acme/missing-secret",
			Build: &buildConfig{GitSecret: "no-such-secret"},
		}),
		withPipeline(pipelineConfig{
			Name: "no-dockerfile", Source: &sourceConfig{Repo: gitHTTP.URL("no-dockerfile")}, Platforms: []string{"linux/amd64"}, Staging: stagingHost + "/acme/no-dockerfile",
			Build: &buildConfig{GitSecret: "git-token", Dockerfile: "docker/Dockerfile"},
		}),
		withPipeline(pipelineConfig{
			Name: "denied", Source: &sourceConfig{Repo: gitHTTP.URL("denied")}, Platforms: []string{"linux/amd64"}, Staging: locked.Host + "/acme/denied",
			Build: &buildConfig{GitSecret: "git-token"},
		})))
	testenv.StartRegistryAt(t, filepath.Join(t.TempDir(), "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithBasicAuth(regUser, regPass),
		localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))
	testenv.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))

	// The Secrets a cluster admin creates in the builder namespace.
	createSecret(t, kube.Client, "registry-credentials", corev1.SecretTypeDockerConfigJson,
		map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(map[string][2]string{stagingHost: {regUser, regPass}})})
	createSecret(t, kube.Client, "git-token", corev1.SecretTypeOpaque, map[string][]byte{builders.GitTokenKey: []byte(gitToken)})
	createSecret(t, kube.Client, "git-ssh", corev1.SecretTypeSSHAuth, map[string][]byte{corev1.SSHAuthPrivateKey: gitSSH.PrivateKey})
	createSecret(t, kube.Client, "ci-token", corev1.SecretTypeOpaque, map[string][]byte{"token": []byte(ciToken)})

	startAgent(t, builderClient, nats.URL, 1, "linux/amd64")
	node := testenv.StartNode(t, kube.Client, buildNS, bk)
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range node.Runs() {
				t.Logf("node ran %s: exit %d after %s\n%s", r.Job, r.ExitCode, r.Took.Round(time.Millisecond), lastLines(r.Output, 40))
			}
		}
	})

	// rev1 first: no longer the head of main, and built with an empty cache.
	githubPush(t, d.URL, privateHTTP, "private-1", rev1)
	r1 := d.waitPhase(t, "private", rev1, 3*time.Minute, types.PhasePromoted, types.PhaseMerged)
	img1 := builtImage(t, stagingHost+"/acme/private", r1)
	checkFile(t, img1, "greeting", greeting+"\n")
	sum := sha256.Sum256([]byte(ciToken))
	checkFile(t, img1, "token.sha256", hex.EncodeToString(sum[:])+"\n")
	checkFile(t, img1, "late.txt", "one\n")
	if inImage(t, img1, ciToken) {
		t.Errorf("the build secret's value is in the image")
	}
	if gitHTTP.Authorized.Load() == 0 {
		t.Errorf("the git server saw no request with the token: the build did not fetch the private repository")
	}

	githubPush(t, d.URL, privateHTTP, "private-2", rev2)
	r2 := d.waitPhase(t, "private", rev2, 3*time.Minute, types.PhasePromoted, types.PhaseMerged)
	checkFile(t, builtImage(t, stagingHost+"/acme/private", r2), "late.txt", "two\n")
	t.Run("the second revision reuses the expensive step from the registry cache", func(t *testing.T) {
		first, second := nodeRun(t, node, kube.Client, rev1, "private"), nodeRun(t, node, kube.Client, rev2, "private")
		if step, cached := stepCached(first.Output, "expensive step"); cached {
			t.Errorf("first build: %s was CACHED with an empty cache", step)
		}
		step, cached := stepCached(second.Output, "expensive step")
		if !cached {
			t.Fatalf("second build: the expensive step was not CACHED:\n%s", first.Output)
		}
		t.Logf("second build, cached step: %s", step)
		if _, cached := stepCached(second.Output, "COPY late.txt"); cached {
			t.Errorf("second build: COPY late.txt was CACHED, but late.txt changed")
		}
		logCacheLines(t, second.Output)
		if _, err := remote.Head(mustRef(t, stagingHost+"/acme/private:buildcache-linux-amd64"), authOpt()); err != nil {
			t.Errorf("no build cache in staging: %v", err)
		}
		if rev := d.revision(t, "private", "buildcache-linux"); rev != nil {
			t.Errorf("the build cache tag became a revision: %+v", rev)
		}
	})

	t.Run("ssh with a key from a kubernetes.io/ssh-auth Secret", func(t *testing.T) {
		githubPush(t, d.URL, privateSSH, "private-ssh-1", rev2)
		r := d.waitPhase(t, "private-ssh", rev2, 3*time.Minute, types.PhasePromoted, types.PhaseMerged)
		checkFile(t, builtImage(t, stagingHost+"/acme/private-ssh", r), "late.txt", "two\n")
	})

	// Each failure: the revision fails, and its reason says what to fix.
	for _, tc := range []struct {
		name, pipeline, repo, rev string
		want                      []string
	}{
		{"no credentials for a private repository", "anonymous", gitHTTP.URL("anonymous"), anonRev,
			[]string{"asked for credentials", "set build.gitSecret of pipeline anonymous", `key "token"`}},
		{"a git Secret that does not exist", "missing-secret", gitHTTP.URL("missing-secret"), missingRev,
			[]string{`Secret "no-such-secret" (build.gitSecret of pipeline missing-secret) is missing from namespace ` + buildNS}},
		{"no Dockerfile", "no-dockerfile", gitHTTP.URL("no-dockerfile"), noDockerfileRev,
			[]string{"error: failed to solve", "docker/Dockerfile"}},
		{"an unknown revision", "private", privateHTTP, unknownRev,
			[]string{"error: failed to solve", unknownRev}},
		{"a registry that refuses the push", "denied", gitHTTP.URL("denied"), deniedRev,
			[]string{"error: failed to solve", locked.Host + "/acme/denied", "401 Unauthorized"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			githubPush(t, d.URL, tc.repo, "fail-"+tc.pipeline+"-"+tc.rev[:7], tc.rev)
			r := d.waitPhase(t, tc.pipeline, tc.rev, 3*time.Minute, types.PhaseFailed)
			t.Logf("reason: %s", r.Reason)
			wantReason(t, r, tc.want...)
		})
	}

	t.Run("no credential in Jobs, logs or build output", func(t *testing.T) {
		jobs, err := kube.Client.BatchV1().Jobs(buildNS).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		events, err := kube.Client.CoreV1().Events(buildNS).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jobsJSON, _ := json.Marshal(jobs)
		eventsJSON, _ := json.Marshal(events)
		var output strings.Builder
		for _, r := range node.Runs() {
			output.WriteString(strings.Join(r.Argv, " ") + "\n" + r.Output)
		}
		keyLine := strings.Split(strings.TrimSpace(string(gitSSH.PrivateKey)), "\n")[1]
		for what, text := range map[string]string{
			"Jobs": string(jobsJSON), "events": string(eventsJSON), "daemon log": d.Logs.String(), "build output": output.String(),
		} {
			for cred, value := range map[string]string{
				"git token": gitToken, "CI token": ciToken, "registry password": regPass, "ssh key": keyLine,
				"registry auth": base64.StdEncoding.EncodeToString([]byte(regUser + ":" + regPass)),
			} {
				if strings.Contains(text, value) {
					t.Errorf("the %s is in the %s", cred, what)
				}
			}
		}
		if len(jobs.Items) < 7 {
			t.Errorf("%d Jobs, want at least the 7 builds above", len(jobs.Items))
		}
	})
}

// startAgent runs a builder agent for platforms as `promoter builder` does, with the
// restricted client, until the test ends.
func startAgent(t *testing.T, client kubernetes.Interface, natsURL string, maxAttempts int, platforms ...string) {
	t.Helper()
	cfg, err := config.Load(config.Input{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL, cfg.Metrics = natsURL, ""
	cfg.Builder.Namespace, cfg.Builder.MaxAttempts = buildNS, maxAttempts
	cfg.Builder.Platforms = platforms
	exec, err := builders.NewKubernetes(client, daemon.JobSettings(cfg.Builder))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.RunAgent(ctx, cfg, exec, daemon.WithAgentOptions(builders.WithRetryDelay(200*time.Millisecond)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
}

func createSecret(t *testing.T, c kubernetes.Interface, name string, typ corev1.SecretType, data map[string][]byte) {
	t.Helper()
	if _, err := c.CoreV1().Secrets(buildNS).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: buildNS}, Type: typ, Data: data,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// dockerConfigJSON is a docker config.json logging in to each host as user with password.
func dockerConfigJSON(logins map[string][2]string) []byte {
	auths := map[string]any{}
	for host, l := range logins {
		auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(l[0] + ":" + l[1]))}
	}
	b, _ := json.Marshal(map[string]any{"auths": auths})
	return b
}

// useDockerConfig points this process's docker config (testenv.Push, the daemon's
// registry client) at logins for the rest of the test.
func useDockerConfig(t *testing.T, logins map[string][2]string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), dockerConfigJSON(logins), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

func authOpt() remote.Option { return remote.WithAuthFromKeychain(authn.DefaultKeychain) }

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// builtImage is the linux/amd64 image of the revision's merged index in repo.
func builtImage(t *testing.T, repo string, r *types.Revision) v1.Image {
	t.Helper()
	idx, err := remote.Index(mustRef(t, repo+"@"+r.Index), authOpt())
	if err != nil {
		t.Fatalf("reading the index of %s: %v", r.Revision, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range m.Manifests {
		if desc.Platform != nil && desc.Platform.OS == "linux" && desc.Platform.Architecture == "amd64" {
			img, err := remote.Image(mustRef(t, repo+"@"+desc.Digest.String()), authOpt())
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("index of %s has no linux/amd64 image: %+v", r.Revision, m.Manifests)
	return nil
}

func checkFile(t *testing.T, img v1.Image, path, want string) {
	t.Helper()
	if got, err := fileInImage(img, path); err != nil || got != want {
		t.Errorf("/%s: got %q (%v), want %q", path, got, err, want)
	}
}

// inImage reports whether s occurs in any uncompressed layer of img.
func inImage(t *testing.T, img v1.Image, s string) bool {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}

// nodeRun is the node's run of the one Job of pipeline's rev. The node records a run once
// the container has exited, which can be after the image it pushed was merged: wait.
func nodeRun(t *testing.T, node *testenv.Node, c kubernetes.Interface, rev, pipeline string) testenv.NodeRun {
	t.Helper()
	var names []string
	for _, j := range listJobs(t, c, rev) {
		if j.Labels[builders.LabelPipeline] == pipeline {
			names = append(names, j.Name)
		}
	}
	var run testenv.NodeRun
	err := testenv.WaitFor(30*time.Second, func() error {
		for _, r := range node.Runs() {
			if slices.Contains(names, r.Job) {
				run = r
				return nil
			}
		}
		return errors.New("no run yet")
	})
	if err != nil {
		t.Fatalf("the node ran no Job of %s %s in 30s (jobs %v)", pipeline, rev, names)
	}
	return run
}

// stepCached finds the step of buildctl's plain progress output whose header contains
// text ("#7 [3/5] RUN echo ...") and reports whether BuildKit marked it "#7 CACHED".
func stepCached(output, text string) (step string, cached bool) {
	header := regexp.MustCompile(`^#([0-9]+) (\[.*\] .*)$`)
	var id string
	for _, l := range strings.Split(output, "\n") {
		if m := header.FindStringSubmatch(l); m != nil && id == "" && strings.Contains(m[2], text) {
			id, step = m[1], m[2]
		}
		if id != "" && strings.TrimSpace(l) == "#"+id+" CACHED" {
			return step, true
		}
	}
	return step, false
}

// logCacheLines logs the lines of BuildKit's output about its cache.
func logCacheLines(t *testing.T, output string) {
	t.Helper()
	for _, l := range strings.Split(output, "\n") {
		if strings.Contains(l, "CACHED") || strings.Contains(l, "importing cache manifest") {
			t.Logf("  %s", l)
		}
	}
}
