package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/promoter-dev/promoter/internal/types"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load(Input{})
	if err != nil {
		t.Fatalf("Load with no input: %v", err)
	}
	if c.Listen != ":8080" || c.Metrics != ":9090" || c.DataDir != "./data" || c.NATS.URL != "" {
		t.Errorf("defaults: got listen=%q metrics=%q dataDir=%q nats.url=%q", c.Listen, c.Metrics, c.DataDir, c.NATS.URL)
	}
	if c.ReconcileInterval != 5*time.Minute || c.Events.MaxBodyBytes != 1<<20 || c.Sign.Format != "bundle" {
		t.Errorf("defaults: got reconcileInterval=%s maxBodyBytes=%d sign.format=%q", c.ReconcileInterval, c.Events.MaxBodyBytes, c.Sign.Format)
	}
}

func TestLoadFullFile(t *testing.T) {
	t.Setenv("TEST_REGISTRY_TOKEN", "tok")
	t.Setenv("TEST_COSIGN_PASSWORD", "pw")
	t.Setenv("TEST_GIT_TOKEN", "t0k")
	c, err := Load(Input{File: "testdata/full.yaml"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p, ok := c.Pipeline("web")
	if !ok {
		t.Fatal("pipeline web not found")
	}
	want := Pipeline{
		Name: "web",
		Source: Source{
			Repo: "https://git.example/acme/web.git", Branch: "main", Poll: 2 * time.Minute, PollToken: "env:TEST_GIT_TOKEN",
			ReleaseTags: []string{"v*"},
		},
		Platforms: []string{"linux/amd64", "linux/arm64", "linux/arm/v7"},
		Build: Build{
			Executor: "kubernetes", Context: ".", Dockerfile: "Dockerfile",
			GitSecret: "web-git", Args: []string{"GO_VERSION=1.26", "Mixed_Case=kept"},
			Secrets:    []BuildSecret{{ID: "CI_JOB_TOKEN", Secret: "ci-token", Key: "token"}},
			Cache:      BuildCache{Ref: "{staging}:buildcache-{os}-{arch}{variant}", Mode: "min"},
			Provenance: "mode=max",
		},
		Staging: "staging.example:5000/acme/web",
		ArchTag: "{revision}-{arch}{variant}",
		Sign:    true,
		Verify: Verify{
			Signers:      []Signer{{Key: "/keys/ci.pub"}, {Issuer: "https://token.actions.githubusercontent.com", SubjectRegexp: "^https://github.com/acme/web/"}},
			TrustedRoot:  "/keys/trusted_root.json",
			Attestations: []Attestation{{PredicateType: "https://slsa.dev/provenance/v1", BuilderID: "https://github.com/acme/builder"}},
		},
		Promote: []Destination{{To: "prod.example/acme/web", RequireSignature: true, MutableTags: []string{"latest"}}},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("pipeline (-want +got):\n%s", diff)
	}
	if c.NATS.Replicas != 3 || c.Promote.Jobs != 4 || c.Promote.Timeout != 10*time.Minute || c.ReconcileInterval != time.Minute {
		t.Errorf("scalars: got %+v %+v %s", c.NATS, c.Promote, c.ReconcileInterval)
	}
	if got := c.InsecureHosts(); !cmp.Equal(got, []string{"staging.example:5000"}) {
		t.Errorf("InsecureHosts: got %v", got)
	}
	for _, tc := range []struct {
		s    Secret
		want string
	}{{c.Auth.RegistryToken, "tok"}, {c.Auth.GitHub.Secret, "s3cret"}, {c.Auth.GitLab.Token, "inline-token"}, {c.Keys.Password, "pw"}} {
		got, err := tc.s.Resolve()
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%s): got %q, %v; want %q", tc.s, got, err, tc.want)
		}
	}
}

func TestLoadInvalidListsEveryProblemWithPath(t *testing.T) {
	_, err := Load(Input{File: "testdata/invalid.yaml"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	got := map[string]bool{}
	for _, p := range validationProblems(t, err) {
		got[p.Path] = true
	}
	for _, path := range []string{
		"listen", "logLevel", "reconcileInterval", "sign.format", "registries[0].host",
		"pipelines[0].name", "pipelines[0].platforms[0]", "pipelines[0].platforms[2]",
		"pipelines[0].staging", "pipelines[0].archTag", "pipelines[0].promote[0].to",
		"pipelines[0].promote[0].requireSignature", "pipelines[0].colour",
		"pipelines[1].archTag", "pipelines[1].build.executor", "keys.public",
		"pipelines[2].build.gitSecret", "pipelines[2].build.args[0]", "pipelines[2].build.args[2]",
		"pipelines[2].build.secrets[0].id", "pipelines[2].build.secrets[1].secret", "pipelines[2].build.secrets[1].key",
		"pipelines[2].build.cache.ref", "pipelines[2].build.provenance",
		"pipelines[3].build.args", "pipelines[3].build.cache.mode",
		"pipelines[4].source.branch", "pipelines[4].build.context", "pipelines[4].build.secrets", "pipelines[4].build.cache.mode",
		"pipelines[2].promote[0].mutableTags", "pipelines[3].source.releaseTags", "pipelines[4].source.releaseTags",
	} {
		if !got[path] {
			t.Errorf("no problem reported at %s; got:\n%v", path, err)
		}
	}
	for _, want := range []string{
		`pipelines[0].platforms[0]: "linux/arm65" is not a known platform`,
		`pipelines[4].source.releaseTags: needs source.repo`,
		`pipelines[3].source.releaseTags: pattern "v[": syntax error in pattern`,
		`pipelines[2].promote[0].mutableTags: latest matches source.releaseTags`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message does not say %q:\n%v", want, err)
		}
	}
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	file := writeConfig(t, "listen: 127.0.0.1:1000\nmetrics: 127.0.0.1:2000\nnats: {url: nats://file:4222}\n")
	t.Setenv("PROMOTER_METRICS", "127.0.0.1:3000")
	t.Setenv("PROMOTER_NATS_URL", "nats://env:4222")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("nats-url", "", "")
	fs.String("listen", ":8080", "")
	if err := fs.Parse([]string{"--nats-url=nats://flag:4222"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Input{File: file, Flags: map[string]*pflag.Flag{"nats.url": fs.Lookup("nats-url"), "listen": fs.Lookup("listen")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"listen (file; flag unset keeps the file value)", c.Listen, "127.0.0.1:1000"},
		{"metrics (env beats file)", c.Metrics, "127.0.0.1:3000"},
		{"nats.url (flag beats env)", c.NATS.URL, "nats://flag:4222"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	t.Setenv("TEST_SECRET", "hunter2")
	for _, s := range []Secret{"hunter2", "env:TEST_SECRET"} {
		for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), s.LogValue().String()} {
			if strings.Contains(out, "hunter2") {
				t.Errorf("secret %s printed its value: %q", s.String(), out)
			}
		}
	}
}

func TestSecretResolveErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		s       Secret
		wantErr error
		want    string // what the message names, for the operator to fix
	}{
		{"unset env", "env:PROMOTER_TEST_NOT_SET", ErrSecretUnavailable, "PROMOTER_TEST_NOT_SET is not set"},
		{"missing file", "file:/nonexistent/secret", os.ErrNotExist, "reading secret file"},
		{"empty file", Secret("file:" + empty), ErrSecretUnavailable, "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Resolve()
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrSecretUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %v (ErrSecretUnavailable) saying %q", err, tc.wantErr, tc.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("auth.github.secret"); got != "PROMOTER_AUTH_GITHUB_SECRET" {
		t.Errorf("got %s", got)
	}
}

func TestServerAndStatusKeys(t *testing.T) {
	status := func(c *Config) any { return c.Status }
	for _, tc := range []struct {
		name    string
		yaml    string
		wantErr string            // a problem path, or "" for none
		got     func(*Config) any // what of the loaded configuration to compare with want
		want    any
	}{
		{name: "defaults", got: func(c *Config) any { return []any{c.Status, c.Server} }, want: []any{"127.0.0.1:8081", Server{
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			IdleTimeout: 30 * time.Second, MaxHeaderBytes: 32 << 10, MaxInFlight: 64,
		}}},
		{name: "status disabled", yaml: `status: ""`, got: status, want: ""},
		{name: "status on the webhook listener", yaml: "listen: \":8080\"\nstatus: \":8080\"", wantErr: "status"},
		{name: "status not an address", yaml: `status: nowhere`, wantErr: "status"},
		{name: "every listener on a port of its own choosing", yaml: "listen: 127.0.0.1:0\nmetrics: 127.0.0.1:0\nstatus: 127.0.0.1:0",
			got: status, want: "127.0.0.1:0"},
		{name: "zero read timeout", yaml: "server: {readTimeout: 0s}", wantErr: "server.readTimeout"},
		{name: "tiny header bound", yaml: "server: {maxHeaderBytes: 100}", wantErr: "server.maxHeaderBytes"},
		{name: "no in-flight slot", yaml: "server: {maxInFlight: 0}", wantErr: "server.maxInFlight"},
		{name: "negative connection budget", yaml: "server: {maxConns: -1}", wantErr: "server.maxConns"},
		{name: "negative share of a client", yaml: "server: {maxConnsPerClient: -1}", wantErr: "server.maxConnsPerClient"},
		{name: "limits map to the listeners", yaml: "server: {readTimeout: 3s, maxInFlight: 7, maxConns: 99, maxConnsPerClient: 9}\nevents: {maxBodyBytes: 4096}",
			got: func(c *Config) any {
				l := c.Server.Limits(c.Events.MaxBodyBytes)
				return []any{l.ReadTimeout, l.MaxInFlight, l.MaxBodyBytes, c.Server.MaxConns, l.MaxConnsPerClient}
			},
			want: []any{3 * time.Second, 7, int64(4096), 99, 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadYAML(t, tc.yaml)
			if tc.wantErr != "" {
				if ps := validationProblems(t, err); len(ps) != 1 || ps[0].Path != tc.wantErr {
					t.Fatalf("got %v, want one problem at %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, tc.got(c)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNATSReplicas(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    int
		wantErr string // a problem at nats.replicas containing this
	}{
		{name: "unset is automatic", yaml: "{}", want: 0},
		{name: "unset with a url is automatic", yaml: "nats: {url: nats://a:4222}", want: 0},
		{name: "3 on a cluster", yaml: "nats: {url: nats://a:4222, replicas: 3}", want: 3},
		{name: "1 on the embedded server", yaml: "nats: {replicas: 1}", want: 1},
		{name: "3 on the embedded server", yaml: "nats: {replicas: 3}", wantErr: "the embedded server is a single node"},
		{name: "negative", yaml: "nats: {url: nats://a:4222, replicas: -1}", wantErr: "between 0 (automatic) and 5"},
		{name: "too many", yaml: "nats: {url: nats://a:4222, replicas: 7}", wantErr: "between 0 (automatic) and 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, tt.yaml+"\nauth: {insecureNoAuth: true}\n")
			if tt.wantErr != "" {
				for _, p := range validationProblems(t, err) {
					if p.Path == "nats.replicas" && strings.Contains(p.Msg, tt.wantErr) {
						return
					}
				}
				t.Fatalf("no nats.replicas problem containing %q in:\n%v", tt.wantErr, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NATS.Replicas != tt.want {
				t.Errorf("nats.replicas: got %d, want %d", c.NATS.Replicas, tt.want)
			}
		})
	}
}

func TestSourcePoll(t *testing.T) {
	t.Setenv("TEST_GIT_TOKEN", "t0k")
	const base = "name: web\n    platforms: [linux/amd64]\n    staging: staging.example/acme/web\n    "
	tests := []struct {
		name     string
		pipeline string            // the pipeline's keys after base
		want     time.Duration     // Domain().Source.Poll
		wantErr  map[string]string // problem path → part of its message
	}{
		{name: "off by default", pipeline: "source: {repo: https://git.example/acme/web.git}"},
		{name: "every minute", pipeline: "source: {repo: https://git.example/acme/web.git, poll: 1m}", want: time.Minute},
		{name: "the minimum", pipeline: "source: {repo: https://git.example/acme/web.git, poll: 10s}", want: 10 * time.Second},
		{name: "with a token", pipeline: "source: {repo: https://git.example/acme/web.git, poll: 1m, pollToken: env:TEST_GIT_TOKEN}", want: time.Minute},
		{name: "a local build following a repository", pipeline: "source: {repo: git://git.example/acme/web.git, poll: 30s}\n    build: {executor: local, dir: .}", want: 30 * time.Second},
		{name: "below the minimum", pipeline: "source: {repo: https://git.example/acme/web.git, poll: 1s}",
			wantErr: map[string]string{"pipelines[0].source.poll": "1s is below the minimum of 10s"}},
		{name: "negative", pipeline: "source: {repo: https://git.example/acme/web.git, poll: -1m}",
			wantErr: map[string]string{"pipelines[0].source.poll": "must not be negative"}},
		{name: "no repository", pipeline: "source: {poll: 1m}",
			wantErr: map[string]string{"pipelines[0].source.repo": "source.poll lists this repository's branch"}},
		{name: "a token without polling", pipeline: "source: {repo: https://git.example/acme/web.git, pollToken: env:TEST_GIT_TOKEN}",
			wantErr: map[string]string{"pipelines[0].source.pollToken": "is used only by source.poll, which is off"}},
		{name: "a token for ssh", pipeline: "source: {repo: \"git@git.example:acme/web.git\", poll: 1m, pollToken: env:TEST_GIT_TOKEN}",
			wantErr: map[string]string{"pipelines[0].source.pollToken": "is sent to an http(s) source.repo only"}},
		{name: "a token that does not resolve", pipeline: "source: {repo: https://git.example/acme/web.git, poll: 1m, pollToken: env:TEST_NO_SUCH_TOKEN}",
			wantErr: map[string]string{"pipelines[0].source.pollToken": "environment variable TEST_NO_SUCH_TOKEN is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, "auth: {insecureNoAuth: true}\npipelines:\n  - "+base+tt.pipeline+"\n")
			if len(tt.wantErr) > 0 {
				wantProblems(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.DomainPipelines()[0].Source.Poll; got != tt.want {
				t.Errorf("Domain().Source.Poll: got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestMergeOnlyPipelines: a pipeline without source.repo is valid and builds nothing (no
// build default applies to it, so the executor is unset); build settings on it are
// refused, each at its path, and say what the two modes are.
func TestMergeOnlyPipelines(t *testing.T) {
	const pipeline = "pipelines:\n  - {name: app, platforms: [linux/amd64, linux/arm64], staging: r.example/app, %s}\n"
	tests := []struct {
		name      string
		fields    string
		extra     string   // more pipelines
		wantPaths []string // problems; none means valid
		wantBuild types.BuildSpec
		builds    bool
	}{
		{name: "no source", fields: "sign: false"},
		{name: "empty source", fields: "source: {}"},
		{name: "source builds with the defaults", fields: "source: {repo: https://git.example/app.git}", builds: true,
			wantBuild: types.BuildSpec{Executor: "kubernetes", Context: ".", Dockerfile: "Dockerfile",
				Cache: types.DefaultCacheRef, CacheMode: "max", Provenance: "mode=min"}},
		{name: "an executor without source", fields: "build: {executor: kubernetes}", wantPaths: []string{"pipelines[0].build.executor"}},
		{name: "a local build without source", fields: "build: {executor: local, dir: ./src}",
			wantPaths: []string{"pipelines[0].build.executor", "pipelines[0].build.dir"}},
		{name: "nested and list build keys without source", fields: "build: {cache: {ref: 'x:{arch}'}, args: [A=1], provenance: 'off'}",
			wantPaths: []string{"pipelines[0].build.args", "pipelines[0].build.cache.ref", "pipelines[0].build.provenance"}},
		{name: "a branch without a repository", fields: "source: {branch: release}", wantPaths: []string{"pipelines[0].source.branch"}},
		// The local and kubernetes executors may not share a platform; a merge-only
		// pipeline has neither.
		{name: "beside a local pipeline on the same platforms", fields: "sign: false",
			extra: "  - {name: dev, source: {repo: https://git.example/dev.git}, platforms: [linux/amd64], staging: r.example/dev, build: {executor: local, dir: .}}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, fmt.Sprintf(pipeline, tt.fields)+tt.extra+"auth: {insecureNoAuth: true}\n")
			if len(tt.wantPaths) > 0 {
				var got []string
				for _, p := range validationProblems(t, err) {
					got = append(got, p.Path)
					if !strings.Contains(p.Msg, "only merges, signs and promotes the arch tags CI pushes") {
						t.Errorf("%s: %q does not explain the two modes", p.Path, p.Msg)
					}
				}
				if diff := cmp.Diff(tt.wantPaths, got); diff != "" {
					t.Errorf("problem paths (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := c.DomainPipelines()[0]
			if d.Builds() != tt.builds {
				t.Errorf("Builds() = %v, want %v", d.Builds(), tt.builds)
			}
			if diff := cmp.Diff(tt.wantBuild, d.Build); diff != "" {
				t.Errorf("build (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKeysPublicTakesOneKeyOrSeveral: keys.public is a list, and one key (what configs
// written before the rotation support hold, and what the chart renders) still loads.
func TestKeysPublicTakesOneKeyOrSeveral(t *testing.T) {
	tests := []struct {
		name, yaml, env string
		want            []string
	}{
		{name: "one key", yaml: "public: /k/cosign.pub", want: []string{"/k/cosign.pub"}},
		{name: "a list", yaml: "public: [/k/old.pub, /k/new.pub]", want: []string{"/k/old.pub", "/k/new.pub"}},
		{name: "the environment, comma-separated", env: "/a.pub,/b.pub", want: []string{"/a.pub", "/b.pub"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := "keys: {cosign: /k/cosign.key}\n"
			if tt.yaml != "" {
				keys = "keys: {cosign: /k/cosign.key, " + tt.yaml + "}\n"
			}
			if tt.env != "" {
				t.Setenv("PROMOTER_KEYS_PUBLIC", tt.env)
			}
			c, err := loadYAML(t, "auth: {insecureNoAuth: true}\n"+keys)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.Keys.Public); diff != "" {
				t.Errorf("keys.public (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildKitConfig(t *testing.T) {
	c, err := loadYAML(t, "builder: {buildkitConfig: buildkitd-staging}\nauth: {insecureNoAuth: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Builder.BuildKitConfig != "buildkitd-staging" {
		t.Errorf("builder.buildkitConfig: got %q", c.Builder.BuildKitConfig)
	}
	_, err = loadYAML(t, "builder: {buildkitConfig: Not_A_Name}\nauth: {insecureNoAuth: true}\n")
	wantProblems(t, err, map[string]string{"builder.buildkitConfig": `"Not_A_Name" is not a ConfigMap name`})
}
