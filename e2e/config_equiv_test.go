package e2e

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestConfigBuilderMatchesTheOldLiterals is a one-off check of the conversion to
// newDaemonConfig: each e2e test's old YAML literal, formatted with placeholder values,
// against what its builder call now renders with the same values, both parsed.
func TestConfigBuilderMatchesTheOldLiterals(t *testing.T) {
	_ = sources.MinInterval
	env := &staged{NATS: &testenv.NATS{URL: "NATS"}, Key: "KEY", Staging: "STAGING", Dest: "DEST"}
	for _, c := range []struct{ name, old, new string }{
		{name: "chain:69", old: yamlf(`
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
`, "A1", registryToken, "A3", "A4", "A5", "A6", "A7", "A8", "A9"),
			new: newDaemonConfig(t, withNATS("A1"), withGitHubSecret("A3"), withSigningKey("A4", "pw"), withReconcile("1h"), withBuilder("A5", 2),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "A6", Branch: "main"}, Platforms: bothArches, Staging: "A7",
					Sign: true, Promote: signedTo("A8", "A9"),
				}))},
		{name: "crash:91", old: yamlf(`
listen: %s
metrics: ""
status: %s
dataDir: %s
reconcileInterval: 2s
auth:
	registryToken: %s
keys:
	cosign: %s
	password: pw
	public: %s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {signers: [{key: %s}]}
		promote:
			- to: %s
				requireSignature: true
`, "A1", "A2", "A3", registryToken, "A5", "A6", "A7", "A8", "A9"),
			new: newDaemonConfig(t, withListeners("A1", "", "A2", "A3"), withReconcile("2s"), withSigningKey("A5", "pw", "A6"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A7",
					Sign: true, Verify: trusting("A8"), Promote: signedTo("A9"),
				}))},
		{name: "envelope:32", old: yamlf(`
listen: %s
metrics: %s
status: ""
dataDir: %s
events:
	maxBodyBytes: 4194304
auth:
	registryToken: %s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s/team/app
`, "A1", "A2", "A3", registryToken, "A5"),
			new: newDaemonConfig(t, withListeners("A1", "A2", "", "A3"), withMaxBodyBytes(4194304),
				withPipeline(pipelineConfig{Name: "app", Platforms: bothArches, Staging: "A5" + "/team/app"}))},
		{name: "evidence:45", old: yamlf(`
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
	maxAttempts: 1
pipelines:
	- name: app
		source: {repo: %s, branch: main}
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		promote:
			- to: %s
				requireSignature: true
`, "A1", registryToken, "A3", "A4", "A5", "A6", "A7", "A8"),
			new: newDaemonConfig(t, withNATS("A1"), withGitHubSecret("A3"), withSigningKey("A4", "pw"), withReconcile("1h"), withBuilder("A5", 1),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "A6", Branch: "main"}, Platforms: bothArches, Staging: "A7",
					Sign: true, Promote: signedTo("A8"),
				}))},
		{name: "flood:45", old: yamlf(`
listen: %s
metrics: %s
status: ""
dataDir: %s
auth:
	registryToken: %s
pipelines:
	- name: app
		platforms: [linux/amd64]
		staging: %s/team/app
`, "A1", "A2", "A3", registryToken, "A5"),
			new: newDaemonConfig(t, withListeners("A1", "A2", "", "A3"),
				withPipeline(pipelineConfig{Name: "app", Platforms: []string{"linux/amd64"}, Staging: "A5" + "/team/app"}))},
		{name: "keyless_sign:40", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
sign:
	fulcioURL: %s
	identityToken: %s
	tsaURL: %s
	rekorURL: %s
	trustedRoot: %s
reconcileInterval: 2s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {acceptUnverified: true}
		promote:
			- to: %s
				requireSignature: true
`, "A1", registryToken, "A3", "A4", "A5", "A6", "A7", "A8", "A9"),
			new: newDaemonConfig(t, withNATS("A1"), withReconcile("2s"),
				withKeylessSigning(signConfig{FulcioURL: "A3", IdentityToken: "A4", TSAURL: "A5", RekorURL: "A6", TrustedRoot: "A7"}),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A8",
					Sign: true, Verify: acceptUnverified(), Promote: signedTo("A9"),
				}))},
		{name: "keys:66", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
keys:
	cosign: %s
	password: pw
	public: [%s, %s]
reconcileInterval: 2s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {acceptUnverified: true}
		promote:
			- to: %s
				requireSignature: true
`, "A1", registryToken, "A3", "A4", "A5", "A6", "A7"),
			new: newDaemonConfig(t, withNATS("A1"), withSigningKey("A3", "pw", "A4", "A5"), withReconcile("2s"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A6",
					Sign: true, Verify: acceptUnverified(), Promote: signedTo("A7"),
				}))},
		{name: "keys:25", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
keys:
	cosign: %s
reconcileInterval: 2s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {acceptUnverified: true}
		promote:
			- to: %s
				requireSignature: true
`, "A1", registryToken, "A3", "A4", "A5"),
			new: newDaemonConfig(t, withNATS("A1"), withSigningKey("A3", ""), withReconcile("2s"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A4",
					Sign: true, Verify: acceptUnverified(), Promote: signedTo("A5"),
				}))},
		{name: "merge:227", old: yamlf(`
auth:
	registryToken: %s
reconcileInterval: 1h
pipelines:
	- name: app
		platforms: [linux/amd64]
		staging: %s
		promote:
			- to: %s
`, registryToken, "A2", "A3"),
			new: newDaemonConfig(t, withReconcile("1h"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: []string{"linux/amd64"}, Staging: "A2",
					Promote: []promoteConfig{{To: "A3"}},
				}))},
		{name: "merge:73", old: yamlf(`
auth:
	registryToken: %s
reconcileInterval: 1s
pipelines:
	- name: app
		source: {repo: https://git.example/team/app}
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		verify: {signers: [{key: %s}]}
	- name: quiet
		platforms: [linux/amd64, linux/arm64]
		staging: %s
`, registryToken, "A2", "A3", "A4"),
			new: newDaemonConfig(t, withReconcile("1s"),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app"}, Platforms: bothArches, Staging: "A2",
					Verify: trusting("A3"),
				}),
				withPipeline(pipelineConfig{Name: "quiet", Platforms: bothArches, Staging: "A4"}))},
		{name: "mergeonly:38", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
	generic:
		token: %s
keys:
	cosign: %s
	password: pw
reconcileInterval: 2s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {acceptUnverified: true}
		promote:
			- to: %s
				requireSignature: true
	- name: batch
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		promote:
			- to: %s
`, "A1", registryToken, "A3", "A4", "A5", "A6", "A7", "A8"),
			new: newDaemonConfig(t, withNATS("A1"), withToken("generic", "A3"), withSigningKey("A4", "pw"), withReconcile("2s"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A5",
					Sign: true, Verify: acceptUnverified(), Promote: signedTo("A6"),
				}),
				withPipeline(pipelineConfig{Name: "batch", Platforms: bothArches, Staging: "A7", Promote: []promoteConfig{{To: "A8"}}}))},
		{name: "monitoring:271", old: yamlf(`
auth:
	registryToken: %s
	github: {secret: %s}
keys:
	cosign: %s
	password: pw
reconcileInterval: 1h
pipelines:
	- name: app
		source: {repo: %s, branch: main}
		platforms: [linux/amd64]
		build: {executor: local, dir: %s}
		staging: %s
		sign: true
		promote:
			- to: %s
				requireSignature: true
`, registryToken, "A2", "A3", "A4", "A5", "A6", "A7"),
			new: newDaemonConfig(t, withGitHubSecret("A2"), withSigningKey("A3", "pw"), withReconcile("1h"),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "A4", Branch: "main"}, Platforms: []string{"linux/amd64"},
					Build: &buildConfig{Executor: "local", Dir: "A5"}, Staging: "A6",
					Sign: true, Promote: signedTo("A7"),
				}))},
		{name: "poll:38", old: yamlf(`
auth:
	registryToken: %s
	github: {secret: %s}
keys:
	cosign: %s
	password: pw
reconcileInterval: 1h
pipelines:
	- name: app
		source: {repo: %s, branch: main, poll: %s}
		platforms: [linux/amd64]
		build: {executor: local, dir: %s}
		staging: %s
		sign: true
		promote:
			- to: %s
				requireSignature: true
`, registryToken, "A2", "A3", "A4", sources.MinInterval, "A6", "A7", "A8"),
			new: newDaemonConfig(t, withGitHubSecret("A2"), withSigningKey("A3", "pw"), withReconcile("1h"),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "A4", Branch: "main", Poll: sources.MinInterval.String()}, Platforms: []string{"linux/amd64"},
					Build: &buildConfig{Executor: "local", Dir: "A6"}, Staging: "A7",
					Sign: true, Promote: signedTo("A8"),
				}))},
		{name: "release:33", old: yamlf(`
auth:
	registryToken: %s
	github:
		secret: %s
keys:
	cosign: %s
	password: pw
reconcileInterval: 1h
pipelines:
	- name: app
		source: {repo: https://git.example/team/app, releaseTags: ["v*"]}
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {signers: [{key: %s}]}
		promote:
			- to: %s
				requireSignature: true
				mutableTags: [latest]
`, registryToken, "A2", "A3", "A4", "A5", "A6"),
			new: newDaemonConfig(t, withGitHubSecret("A2"), withSigningKey("A3", "pw"), withReconcile("1h"),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app", ReleaseTags: []string{"v*"}},
					Platforms: bothArches, Staging: "A4", Sign: true, Verify: trusting("A5"),
					Promote: []promoteConfig{{To: "A6", RequireSignature: true, MutableTags: []string{"latest"}}},
				}))},
		{name: "slowbody:62", old: yamlf(`
listen: %s
metrics: %s
status: %s
dataDir: %s
auth:
	registryToken: %s
pipelines:
	- name: app
		platforms: [linux/amd64]
		staging: %s/team/app
`, "A1", "A2", "A3", "A4", registryToken, "A6"),
			new: newDaemonConfig(t, withListeners("A1", "A2", "A3", "A4"),
				withPipeline(pipelineConfig{Name: "app", Platforms: []string{"linux/amd64"}, Staging: "A6" + "/team/app"}))},
		{name: "status:24", old: yamlf(`
auth:
	registryToken: %s
	statusToken: %s
	generic: {token: gen}
pipelines:
	- name: app
		source: {repo: https://git.example/team/app}
		platforms: [linux/amd64]
		staging: %s/team/app
`, registryToken, "A2", "A3"),
			new: newDaemonConfig(t, withAuth("statusToken", "A2"), withToken("generic", "gen"),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app"}, Platforms: []string{"linux/amd64"},
					Staging: "A3" + "/team/app",
				}))},
		{name: "statuspage:54", old: yamlf(`
auth:
	registryToken: %[1]s
	statusToken: %[2]s
	generic: {token: gen}
keys:
	cosign: %[3]s
	password: pw
builder: {maxAttempts: 1}
reconcileInterval: 1h
pipelines:
	- name: app
		source: {repo: https://git.example/team/app}
		platforms: [linux/amd64]
		build: {executor: local, dir: %[4]s}
		staging: %[5]s/team/app
		sign: true
		promote:
			- to: %[6]s/app
				requireSignature: true
			- to: %[7]s/app
	- name: ci
		platforms: [linux/amd64, linux/arm64]
		staging: %[5]s/team/ci
		promote:
			- to: %[6]s/ci
	- name: broken
		source: {repo: https://git.example/team/broken}
		platforms: [linux/amd64]
		build: {executor: local, dir: "%[8]s"}
		staging: %[5]s/team/broken
`, registryToken, "A2", "A3", "A4", "A5", "A6", "A7", "A8"),
			new: newDaemonConfig(t, withAuth("statusToken", "A2"), withToken("generic", "gen"), withSigningKey("A3", "pw"),
				withBuilder("", 1), withReconcile("1h"),
				withPipeline(pipelineConfig{
					Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app"}, Platforms: []string{"linux/amd64"},
					Build: &buildConfig{Executor: "local", Dir: "A4"}, Staging: "A5" + "/team/app", Sign: true,
					Promote: []promoteConfig{{To: "A6" + "/app", RequireSignature: true}, {To: "A7" + "/app"}},
				}),
				withPipeline(pipelineConfig{
					Name: "ci", Platforms: bothArches, Staging: "A5" + "/team/ci", Promote: []promoteConfig{{To: "A6" + "/ci"}},
				}),
				withPipeline(pipelineConfig{
					Name: "broken", Source: &sourceConfig{Repo: "https://git.example/team/broken"}, Platforms: []string{"linux/amd64"},
					Build: &buildConfig{Executor: "local", Dir: "A8"}, Staging: "A5" + "/team/broken",
				}))},
		{name: "storm:51", old: yamlf(`
auth:
	registryToken: %s
keys:
	cosign: %s
	password: pw
	public: %s
reconcileInterval: 1h
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {signers: [{key: %s}]}
		promote:
			- to: %s
				requireSignature: true
`, registryToken, "A2", "A3", "A4", "A5", "A6"),
			new: newDaemonConfig(t, withSigningKey("A2", "pw", "A3"), withReconcile("1h"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A4",
					Sign: true, Verify: trusting("A5"), Promote: signedTo("A6"),
				}))},
		{name: "private_build:92", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
	github:
		secret: %s
reconcileInterval: 1h
builder:
	namespace: %s
pipelines:
	- name: private
		source: {repo: %s}
		platforms: [linux/amd64]
		staging: %s/acme/private
		build:
			context: app
			gitSecret: git-token
			args: ["GREETING=%s"]
			secrets:
				- {id: ci_token, secret: ci-token, key: token}
	- name: private-ssh
		source: {repo: "%s"}
		platforms: [linux/amd64]
		staging: %s/acme/private-ssh
		build:
			context: app
			gitSecret: git-ssh
			args: ["GREETING=%s"]
			secrets:
				- {id: ci_token, secret: ci-token, key: token}
	- name: anonymous
		source: {repo: %s}
		platforms: [linux/amd64]
		staging: %s/acme/anonymous
	- name: missing-secret
		source: {repo: %s}
		platforms: [linux/amd64]
		staging: %s/acme/missing-secret
		build: {gitSecret: no-such-secret}
	- name: no-dockerfile
		source: {repo: %s}
		platforms: [linux/amd64]
		staging: %s/acme/no-dockerfile
		build: {gitSecret: git-token, dockerfile: docker/Dockerfile}
	- name: denied
		source: {repo: %s}
		platforms: [linux/amd64]
		staging: %s/acme/denied
		build: {gitSecret: git-token}
`, "A1", registryToken, "A3", "A4", "A5", "A6", "A7", "A8", "A9", "A10", "A11", "A12", "A13", "A14", "A15", "A16", "A17", "A18"),
			new: newDaemonConfig(t, withNATS("A1"), withGitHubSecret("A3"), withReconcile("1h"), withBuilder("A4", 0),
				withPipeline(pipelineConfig{
					Name: "private", Source: &sourceConfig{Repo: "A5"}, Platforms: []string{"linux/amd64"}, Staging: "A6" + "/acme/private",
					Build: &buildConfig{Context: "app", GitSecret: "git-token", Args: []string{"GREETING=" + "A7"}, Secrets: []buildSecret{{ID: "ci_token", Secret: "ci-token", Key: "token"}}},
				}),
				withPipeline(pipelineConfig{
					Name: "private-ssh", Source: &sourceConfig{Repo: "A8"}, Platforms: []string{"linux/amd64"}, Staging: "A9" + "/acme/private-ssh",
					Build: &buildConfig{Context: "app", GitSecret: "git-ssh", Args: []string{"GREETING=" + "A10"}, Secrets: []buildSecret{{ID: "ci_token", Secret: "ci-token", Key: "token"}}},
				}),
				withPipeline(pipelineConfig{Name: "anonymous", Source: &sourceConfig{Repo: "A11"}, Platforms: []string{"linux/amd64"}, Staging: "A12" + "/acme/anonymous"}),
				withPipeline(pipelineConfig{
					Name: "missing-secret", Source: &sourceConfig{Repo: "A13"}, Platforms: []string{"linux/amd64"}, Staging: "A14" + "/acme/missing-secret",
					Build: &buildConfig{GitSecret: "no-such-secret"},
				}),
				withPipeline(pipelineConfig{
					Name: "no-dockerfile", Source: &sourceConfig{Repo: "A15"}, Platforms: []string{"linux/amd64"}, Staging: "A16" + "/acme/no-dockerfile",
					Build: &buildConfig{GitSecret: "git-token", Dockerfile: "docker/Dockerfile"},
				}),
				withPipeline(pipelineConfig{
					Name: "denied", Source: &sourceConfig{Repo: "A17"}, Platforms: []string{"linux/amd64"}, Staging: "A18" + "/acme/denied",
					Build: &buildConfig{GitSecret: "git-token"},
				}))},
		{name: "soak:99 key", old: yamlf(`
listen: %s
status: %s
metrics: ""
dataDir: %s
reconcileInterval: 1h
auth:
	registryToken: %s
%s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {signers: [{key: %s}]}
		promote:
			- to: %s
				requireSignature: true
			- to: %s
				requireSignature: true
`, "A1", "A2", "A3", registryToken, yamlf(`keys:
	cosign: %s
	password: pw
	public: %s`, "S1", "S2"), "A6", "A7", "A8", "A9"),
			new: newDaemonConfig(t, withListeners("A1", "", "A2", "A3"), withReconcile("1h"), withSigningKey("S1", "pw", "S2"),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A6",
					Sign: true, Verify: trusting("A7"), Promote: signedTo("A8", "A9"),
				}))},
		{name: "soak:99 keyless", old: yamlf(`
listen: %s
status: %s
metrics: ""
dataDir: %s
reconcileInterval: 1h
auth:
	registryToken: %s
%s
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify: {signers: [{key: %s}]}
		promote:
			- to: %s
				requireSignature: true
			- to: %s
				requireSignature: true
`, "A1", "A2", "A3", registryToken, yamlf(`sign:
	fulcioURL: %s
	identityToken: %s
	tsaURL: %s
	trustedRoot: %s`, "S1", "S2", "S3", "S4"), "A6", "A7", "A8", "A9"),
			new: newDaemonConfig(t, withListeners("A1", "", "A2", "A3"), withReconcile("1h"), withKeylessSigning(signConfig{FulcioURL: "S1", IdentityToken: "S2", TSAURL: "S3", TrustedRoot: "S4"}),
				withPipeline(pipelineConfig{
					Name: "app", Platforms: bothArches, Staging: "A6",
					Sign: true, Verify: trusting("A7"), Promote: signedTo("A8", "A9"),
				}))},
		{name: "registry_formats:95", old: yamlf(`
auth:
%s
reconcileInterval: 1h
pipelines:
	- name: web
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		promote:
			- to: %s
`, yamlf("\tharbor: {token: %s}\n\tcloudevents: {token: %s}", "H", "C"), "A2", "A3"),
			new: vendorConfig(t, map[string]string{"harbor": "H", "cloudevents": "C"}, "A2", "A3")},
		{name: "harness startTrusting", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
keys:
	cosign: %s
	password: pw
reconcileInterval: 2s
pipelines:`, "NATS", registryToken, "KEY") + yamlf(`
	- name: %s
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify:
			signers:
				- key: %s
		promote:
			- to: %s
				requireSignature: true
`, "P", "STAGING", "CIPUB", "DEST"),
			new: env.signingConfig(t, env.trustingPipeline("P", "CIPUB"))},
		{name: "keyless startSigning", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
keys:
	cosign: %s
	password: pw
reconcileInterval: 2s
pipelines:`, "NATS", registryToken, "KEY") + yamlf(`
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		sign: true
		verify:
			signers:
				- issuer: %s
					subject: %s
			trustedRoot: %s
		promote:
			- to: %s
				requireSignature: true
`, "STAGING", "ISSUER", "SUBJECT", "ROOT", "DEST"),
			new: env.signingConfig(t, pipelineConfig{
				Name: "app", Platforms: bothArches, Staging: "STAGING", Sign: true,
				Verify: &verifyConfig{
					Signers:     []signerConfig{{Issuer: "ISSUER", Subject: "SUBJECT"}},
					TrustedRoot: "ROOT",
				},
				Promote: signedTo("DEST"),
			})},
		{name: "merge appConfig", old: yamlf(`
nats:
	url: %s
auth:
	registryToken: %s
reconcileInterval: 1h
pipelines:
	- name: app
		platforms: [linux/amd64, linux/arm64]
		staging: %s
`, "A1", registryToken, "A3"),
			new: appConfig(t, "A1", "A3")},
	} {
		t.Run(c.name, func(t *testing.T) {
			var old, new any
			if err := yaml.Unmarshal([]byte(c.old), &old); err != nil {
				t.Fatalf("old: %v\n%s", err, c.old)
			}
			if err := yaml.Unmarshal([]byte(c.new), &new); err != nil {
				t.Fatalf("new: %v\n%s", err, c.new)
			}
			// keys.public: X and keys.public: [X] load alike (config.Load decodes a
			// scalar into a one-element list); the builder writes the list.
			if keys, ok := old.(map[string]any)["keys"].(map[string]any); ok {
				if pub, ok := keys["public"].(string); ok {
					keys["public"] = []any{pub}
				}
			}
			if diff := cmp.Diff(old, new); diff != "" {
				t.Errorf("config (-old +new):\n%s\nnew:\n%s", diff, c.new)
			}
		})
	}
}
