package builders_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/types"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current output")

func testBuilder() builders.JobSettings {
	return builders.JobSettings{
		Namespace:      "promoter-builds",
		Image:          builders.DefaultImage,
		RegistrySecret: "registry-credentials",
		Deadline:       time.Hour,
		TTL:            30 * time.Minute,
		HostUsers:      true,
	}
}

func testRequest(platform string) types.BuildRequest {
	p := types.MustPlatform(platform)
	return types.BuildRequest{
		Pipeline:   "web",
		Revision:   "3f2c1a9d5e7b8c0f1a2b3c4d5e6f708192a3b4c5",
		Platform:   p,
		SourceRepo: "https://git.example/acme/web.git",
		Context:    ".",
		Dockerfile: "Dockerfile",
		Image:      "staging.example:5000/acme/web:" + types.ArchTag("{revision}-{arch}{variant}").Render("3f2c1a9d5e7b8c0f1a2b3c4d5e6f708192a3b4c5", p),
	}
}

func TestDefaultJobGolden(t *testing.T) {
	tmpl, err := builders.NewJobTemplate(testBuilder())
	if err != nil {
		t.Fatal(err)
	}
	// withBuildSettings is a request of a pipeline that sets every build.* option.
	withBuildSettings := func(repo string) func(*types.BuildRequest) {
		return func(r *types.BuildRequest) {
			r.SourceRepo, r.GitSecret = repo, "web-git"
			r.Args = []string{"GO_VERSION=1.26", "EMPTY="}
			r.Secrets = []types.BuildSecret{{ID: "CI_JOB_TOKEN", Secret: "ci-token", Key: "token"}, {ID: "npmrc", Secret: "npm", Key: ".npmrc"}}
			r.Cache = &types.BuildCache{Ref: "staging.example:5000/acme/web:buildcache-linux-amd64", Mode: "max"}
			r.Provenance = "mode=min"
		}
	}
	for _, tc := range []struct {
		name, platform, golden string
		change                 func(*types.BuildRequest)
	}{
		{"linux/amd64", "linux/amd64", "job-linux-amd64.golden.yaml", nil},
		{"linux/arm64", "linux/arm64", "job-linux-arm64.golden.yaml", nil},
		{"linux/arm/v7", "linux/arm/v7", "job-linux-arm-v7.golden.yaml", nil},
		{"https token, args, secrets, cache, provenance", "linux/amd64", "job-build-settings-https.golden.yaml", withBuildSettings("https://git.example/acme/web.git")},
		{"ssh key", "linux/amd64", "job-build-settings-ssh.golden.yaml", withBuildSettings("git@git.example:acme/web.git")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(tc.platform)
			if tc.change != nil {
				tc.change(&req)
			}
			job, err := tmpl.Render(req, 1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(job)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestDefaultJobGolden -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("rendered Job differs from %s (-want +got; -update rewrites it):\n%s", path, diff)
			}
		})
	}
}

func TestDefaultJobSecurity(t *testing.T) {
	for _, hostUsers := range []bool{true, false} {
		b := testBuilder()
		b.HostUsers = hostUsers
		tmpl, err := builders.NewJobTemplate(b)
		if err != nil {
			t.Fatal(err)
		}
		job, err := tmpl.Render(testRequest("linux/arm/v7"), 2)
		if err != nil {
			t.Fatal(err)
		}
		spec := job.Spec.Template.Spec
		if spec.HostUsers == nil || *spec.HostUsers != hostUsers {
			t.Errorf("hostUsers: got %v, want %v", spec.HostUsers, hostUsers)
		}
		if got := spec.NodeSelector["kubernetes.io/arch"]; got != "arm" {
			t.Errorf("arch nodeSelector: got %q, want arm", got)
		}
		c := spec.Containers[0]
		if c.SecurityContext.Privileged != nil {
			t.Errorf("privileged is set: %v", *c.SecurityContext.Privileged)
		}
		if *c.SecurityContext.RunAsUser != 1000 || *spec.SecurityContext.RunAsUser != 1000 {
			t.Errorf("runAsUser: got %d/%d, want 1000", *spec.SecurityContext.RunAsUser, *c.SecurityContext.RunAsUser)
		}
		args := strings.Join(c.Args, " ")
		for _, want := range []string{
			"--opt context=https://git.example/acme/web.git#3f2c1a9d5e7b8c0f1a2b3c4d5e6f708192a3b4c5",
			"--opt platform=linux/arm/v7",
			"--output type=image,name=staging.example:5000/acme/web:3f2c1a9d5e7b8c0f1a2b3c4d5e6f708192a3b4c5-armv7,push=true",
		} {
			if !strings.Contains(args, want) {
				t.Errorf("args %q lack %q", args, want)
			}
		}
		if *job.Spec.BackoffLimit != 0 || *job.Spec.ActiveDeadlineSeconds != 3600 || *job.Spec.TTLSecondsAfterFinished != 1800 {
			t.Errorf("backoffLimit/deadline/ttl: got %d/%d/%d, want 0/3600/1800",
				*job.Spec.BackoffLimit, *job.Spec.ActiveDeadlineSeconds, *job.Spec.TTLSecondsAfterFinished)
		}
	}
}

func TestJobNameAndLabels(t *testing.T) {
	long := testRequest("linux/arm/v7")
	long.Pipeline = strings.Repeat("very-long-pipeline-name-", 3) + "x"
	long.Revision = "Feature/Some_Branch.Name-" + strings.Repeat("0123456789", 8)
	seen := map[string]bool{}
	for _, req := range []types.BuildRequest{testRequest("linux/amd64"), testRequest("linux/arm/v7"), long} {
		for attempt := 1; attempt <= 3; attempt++ {
			name := builders.JobName(req, attempt)
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				t.Errorf("builders.JobName(%s, %d) = %q: %v", req.MsgID(), attempt, name, errs)
			}
			if name != builders.JobName(req, attempt) {
				t.Errorf("builders.JobName(%s, %d) is not deterministic", req.MsgID(), attempt)
			}
			if seen[name] {
				t.Errorf("builders.JobName(%s, %d) = %q is not unique", req.MsgID(), attempt, name)
			}
			seen[name] = true
			for k, v := range builders.JobLabels(req, attempt) {
				if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
					t.Errorf("label %s=%q: %v", k, v, errs)
				}
			}
		}
	}
	if got, want := builders.JobName(testRequest("linux/arm/v7"), 2), "build-web-3f2c1a9d5e7b8c0f1a2b3c4d5e6f7-linux-arm-v7-2-"; !strings.HasPrefix(got, want) {
		t.Errorf("builders.JobName = %q, want prefix %q", got, want)
	}
}

func TestGitContext(t *testing.T) {
	tests := []struct{ context, want string }{
		{".", "https://git.example/acme/web.git#abc"},
		{"", "https://git.example/acme/web.git#abc"},
		{"services/api/", "https://git.example/acme/web.git#abc:services/api"},
		{"./app", "https://git.example/acme/web.git#abc:app"},
	}
	for _, tc := range tests {
		req := types.BuildRequest{SourceRepo: "https://git.example/acme/web.git", Revision: "abc", Context: tc.context}
		if got := builders.GitContext(req); got != tc.want {
			t.Errorf("builders.GitContext(context %q) = %q, want %q", tc.context, got, tc.want)
		}
	}
	// BuildKit takes an http(s) URL for git only with a .git suffix.
	repos := []struct{ repo, want string }{
		{"https://github.com/acme/web", "https://github.com/acme/web.git#abc"},
		{"https://github.com/acme/web/", "https://github.com/acme/web.git#abc"},
		{"http://git.internal:3000/acme/web", "http://git.internal:3000/acme/web.git#abc"},
		{"git://127.0.0.1:9418/web", "git://127.0.0.1:9418/web#abc"},
		{"ssh://git@github.com/acme/web", "ssh://git@github.com/acme/web#abc"},
		{"git@github.com:acme/web.git", "git@github.com:acme/web.git#abc"},
	}
	for _, tc := range repos {
		if got := builders.GitContext(types.BuildRequest{SourceRepo: tc.repo, Revision: "abc"}); got != tc.want {
			t.Errorf("builders.GitContext(repo %q) = %q, want %q", tc.repo, got, tc.want)
		}
	}
}

func TestCustomJobTemplate(t *testing.T) {
	kaniko := `apiVersion: batch/v1
kind: Job
metadata:
  name: ignored
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: kaniko
          image: registry.example/kaniko-fork:v1
          args:
            - --context={{ .GitContext }}
            - --destination={{ .Request.Image }}
            - --custom-platform={{ .Request.Platform }}
          securityContext:
            privileged: {{ .Attempt | printf "%d" | eq "99" }}
`
	tests := []struct {
		name, text string
		wantErr    error
		wantInErr  string
	}{
		{name: "kaniko fork", text: kaniko},
		{name: "privileged", text: strings.Replace(kaniko, `{{ .Attempt | printf "%d" | eq "99" }}`, "true", 1), wantErr: bus.ErrPermanent, wantInErr: "privileged"},
		{name: "not a job", text: "apiVersion: v1\nkind: Pod\n", wantErr: bus.ErrPermanent, wantInErr: "want batch/v1 Job"},
		{name: "typo", text: strings.Replace(kaniko, "backoffLimit", "backofLimit", 1), wantErr: bus.ErrPermanent, wantInErr: "backofLimit"},
		{name: "unknown field in data", text: strings.Replace(kaniko, ".GitContext", ".Repo", 1), wantErr: bus.ErrPermanent, wantInErr: "Repo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testBuilder()
			b.JobTemplate = filepath.Join(t.TempDir(), "job.yaml")
			if err := os.WriteFile(b.JobTemplate, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			tmpl, err := builders.NewJobTemplate(b)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantInErr) {
					t.Fatalf("builders.NewJobTemplate: got %v, want %v containing %q", err, tc.wantErr, tc.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			job, err := tmpl.Render(testRequest("linux/arm64"), 3)
			if err != nil {
				t.Fatal(err)
			}
			if job.Name != builders.JobName(testRequest("linux/arm64"), 3) || job.Namespace != "promoter-builds" || job.Labels[builders.LabelAttempt] != "3" {
				t.Errorf("name/namespace/labels not enforced: %s/%s %v", job.Namespace, job.Name, job.Labels)
			}
			if got := job.Spec.Template.Spec.Containers[0].Args[1]; got != "--destination="+testRequest("linux/arm64").Image {
				t.Errorf("args[1] = %q", got)
			}
		})
	}
}

func TestReportedDigest(t *testing.T) {
	const d = "sha256:6f1bde0e4ec4ce9cf3fd3a4b5b1d4a3d1a0bbda0f6a1ad0b8ad0a25e2c56f5f9"
	tests := []struct {
		name   string
		msg    string
		want   string
		wantOK bool
	}{
		{name: "buildctl metadata", msg: `{"containerimage.descriptor":{"mediaType":"application/vnd.oci.image.index.v1+json"},"containerimage.digest":"` + d + `","image.name":"r/a:x"}`, want: d, wantOK: true},
		{name: "kaniko digest file", msg: d + "\n", want: d, wantOK: true},
		{name: "metadata cut at the kubelet's limit", msg: `{"containerimage.buildinfo":"eyJ...","containerimage.digest": "` + d + `","image.na`, want: d, wantOK: true},
		{name: "empty", msg: ""},
		{name: "a log tail", msg: "#12 pushing layers 0.3s done\n#12 DONE"},
		{name: "metadata without a digest", msg: `{"image.name":"r/a:x"}`},
		{name: "not a sha256 digest", msg: `{"containerimage.digest":"sha256:abc"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := builders.ReportedDigest(tt.msg)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
