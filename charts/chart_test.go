// Package charts tests the Helm chart in charts/promoter with the real helm binary and a
// real kube-apiserver: lint, golden `helm template` output, schema rejections, a Strict
// server-side dry-run of every rendered object, and Pod Security admission of every pod.
package charts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current helm template output")

const (
	// kubeVersion is what helm template assumes of the cluster: a helm built with `go
	// install` defaults to v1.20, older than the chart's kubeVersion constraint. It matches
	// the kube-apiserver the dry-run tests use.
	kubeVersion = "v1.37.2"
	chartDir    = "promoter"
	release     = "promoter"
	// namespace is the release namespace of every render.
	namespace = "promoter"
)

// valueSets are the renders under test: the defaults, everything switched on, the
// remaining branches (external NATS with credentials, no token, unmanaged namespace),
// keyless signing with trust material mounted, a KMS key with credentials from a Secret,
// and a key pair whose signatures are timestamped and logged.
var valueSets = []struct {
	name   string
	values string // file under testdata, or "" for the chart defaults
}{
	{name: "default"},
	{name: "full", values: "testdata/values-full.yaml"},
	{name: "external", values: "testdata/values-external.yaml"},
	{name: "keyless", values: "testdata/values-keyless.yaml"},
	{name: "kms", values: "testdata/values-kms.yaml"},
	{name: "witnessed", values: "testdata/values-witnessed.yaml"},
}

// helm runs the real helm binary offline with a private HOME, so no user or CI
// configuration (repositories, plugins, kubeconfig) leaks into the result.
type helm struct {
	bin  string
	home string
}

func newHelm(t *testing.T) helm {
	t.Helper()
	return helm{bin: testenv.Tool(t, "helm"), home: t.TempDir()}
}

func (h helm) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = []string{
		"HOME=" + h.home,
		"PATH=" + os.Getenv("PATH"),
		"XDG_CACHE_HOME=" + filepath.Join(h.home, "cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(h.home, "config"),
		"XDG_DATA_HOME=" + filepath.Join(h.home, "data"),
		"KUBECONFIG=" + filepath.Join(h.home, "no-kubeconfig"),
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// template renders the chart with the given values files.
func (h helm) template(t *testing.T, valuesFiles ...string) (string, error) {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	out, stderr, err := h.run(t, args...)
	if err != nil {
		return out, fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out, nil
}

func valuesArgs(file string) []string {
	if file == "" {
		return nil
	}
	return []string{file}
}

func TestLint(t *testing.T) {
	h := newHelm(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
			if vs.values != "" {
				args = append(args, "--values", vs.values)
			}
			out, stderr, err := h.run(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
			}
			if want := "1 chart(s) linted, 0 chart(s) failed"; !strings.Contains(out, want) {
				t.Errorf("helm lint output does not say %q:\n%s", want, out)
			}
		})
	}
}

func TestTemplateGolden(t *testing.T) {
	h := newHelm(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			got, err := h.template(t, valuesArgs(vs.values)...)
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join("testdata", vs.name+".golden.yaml"), got)
		})
	}
}

// compareGolden compares got with the golden file, or rewrites the file under -update.
func compareGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run `go test ./charts/ -update` to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("output differs from %s (-want +got); if the change is intended, rerun with -update:\n%s", golden, diff)
	}
}

// TestRenderedConfigLoads feeds the ConfigMaps the chart renders to the real config
// loader, with the referenced Secret files present, so a chart key the daemon does not know
// (or a value it rejects) fails here rather than in a crash-looping pod.
func TestRenderedConfigLoads(t *testing.T) {
	h := newHelm(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			out, err := h.template(t, valuesArgs(vs.values)...)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeObjects(t, out)
			var n int
			for _, o := range objs {
				text, found, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
				if o.GetKind() != "ConfigMap" || !found {
					continue // the Grafana dashboard's ConfigMap holds no configuration
				}
				n++
				if strings.Contains(text, "${") {
					t.Errorf("ConfigMap %s holds an unexpanded placeholder:\n%s", o.GetName(), text)
				}
				assertNoSecretValues(t, o.GetName(), text)
				cfg := loadRendered(t, text)
				if cfg.NATS.URL == "" {
					t.Errorf("ConfigMap %s: nats.url is empty; every replica would start its own embedded server", o.GetName())
				}
				if cfg.Builder.Namespace == "" {
					t.Errorf("ConfigMap %s: builder.namespace is empty", o.GetName())
				}
				if cfg.Sign.Keyless() && cfg.Keys.Cosign != "" {
					t.Errorf("ConfigMap %s: keyless signing and keys.cosign %q are both set", o.GetName(), cfg.Keys.Cosign)
				}
			}
			if n == 0 {
				t.Fatal("no ConfigMap rendered")
			}
		})
	}
}

// secretRef matches the Secret references the chart writes: file:/etc/promoter/...
var secretRef = regexp.MustCompile(`file:(/etc/promoter/[^\s"']+)`)

// envRef matches the env:NAME references a user writes for values the chart does not
// mount (a source.pollToken set through daemon.extraEnv).
var envRef = regexp.MustCompile(`env:([A-Za-z_][A-Za-z0-9_]*)`)

// assertNoSecretValues checks every secret-typed key holds a file: reference, never a value.
func assertNoSecretValues(t *testing.T, name, text string) {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("ConfigMap %s: config.yaml is not YAML: %v", name, err)
	}
	paths := [][]string{{"auth", "statusToken"}, {"keys", "password"}}
	for _, e := range events.Receivers {
		paths = append(paths, strings.Split(e.SecretKey, "."))
	}
	for _, path := range paths {
		v, found, _ := unstructured.NestedFieldNoCopy(m, path...)
		if !found {
			continue
		}
		s, _ := v.(string)
		if !strings.HasPrefix(s, "file:/etc/promoter/") {
			t.Errorf("ConfigMap %s: %s = %q, want a file:/etc/promoter/... reference", name, strings.Join(path, "."), s)
		}
	}
	// A poll token is the user's own reference: the environment or a file, never a value.
	pipelines, _, _ := unstructured.NestedSlice(m, "pipelines")
	for i, p := range pipelines {
		tok, found, _ := unstructured.NestedString(p.(map[string]any), "source", "pollToken")
		if found && !strings.HasPrefix(tok, "env:") && !strings.HasPrefix(tok, "file:") {
			t.Errorf("ConfigMap %s: pipelines[%d].source.pollToken = %q, want an env: or file: reference", name, i, tok)
		}
	}
}

// loadRendered writes the rendered config with /etc/promoter/ moved into a temp dir, creates
// the Secret files it refers to, sets the environment variables it refers to (as
// daemon.extraEnv would), and loads it with config.Load.
func loadRendered(t *testing.T, text string) *config.Config {
	t.Helper()
	for _, m := range envRef.FindAllStringSubmatch(text, -1) {
		t.Setenv(m[1], "s3cret")
	}
	root := t.TempDir()
	relocate := func(p string) string { return filepath.Join(root, strings.TrimPrefix(p, "/etc/promoter/")) }
	for _, m := range secretRef.FindAllStringSubmatch(text, -1) {
		p := relocate(m[1])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text = strings.ReplaceAll(text, "/etc/promoter/", root+"/")
	file := filepath.Join(root, "config.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Input{File: file})
	if err != nil {
		t.Fatalf("the daemon would refuse the rendered config: %v\n%s", err, text)
	}
	return cfg
}

func TestSchemaRejectsWrongValues(t *testing.T) {
	h := newHelm(t)
	tests := []struct {
		name   string
		values string
		// want are substrings of helm's error, which must name the key and the problem.
		want []string
	}{
		{
			name:   "replicas not a number",
			values: `daemon: {replicas: "two"}`,
			want:   []string{"values don't meet the specifications of the schema", "/daemon/replicas", "got string, want integer"},
		},
		{
			name:   "unknown log level",
			values: `config: {logLevel: verbose}`,
			want:   []string{"/config/logLevel", "must be one of", "debug"},
		},
		{
			name:   "pull policy",
			values: `image: {pullPolicy: Sometimes}`,
			want:   []string{"/image/pullPolicy", "must be one of", "IfNotPresent"},
		},
		{
			name:   "builder group without platforms",
			values: `builder: {groups: [{name: arm}]}`,
			want:   []string{"/builder/groups/0", "missing property 'platforms'"},
		},
		{
			name:   "platform without architecture",
			values: `builder: {groups: [{name: arm, platforms: [linux]}]}`,
			want:   []string{"/builder/groups/0/platforms/0", "'linux' does not match pattern"},
		},
		{
			name:   "duration",
			values: `config: {promote: {timeout: 30 minutes}}`,
			want:   []string{"/config/promote/timeout", "'30 minutes' does not match pattern"},
		},
		{
			name:   "key the chart owns",
			values: `config: {listen: ":80"}`,
			want:   []string{"at '/config'", "'listen' not allowed"},
		},
		{
			name:   "secret value in the config",
			values: `config: {auth: {registryToken: hunter2}}`,
			want:   []string{"at '/config/auth'", "'registryToken' not allowed"},
		},
		{
			name:   "poll token value in the config",
			values: `config: {pipelines: [{name: web, platforms: [linux/amd64], staging: r.example/web, source: {repo: https://git.example/web.git, poll: 1m, pollToken: hunter2}}]}`,
			want:   []string{"/config/pipelines/0/source/pollToken", "'hunter2' does not match pattern"},
		},
		{
			name:   "poll not a duration",
			values: `config: {pipelines: [{name: web, platforms: [linux/amd64], staging: r.example/web, source: {repo: https://git.example/web.git, poll: 1 minute}}]}`,
			want:   []string{"/config/pipelines/0/source/poll", "'1 minute' does not match pattern"},
		},
		{
			name:   "misspelt top-level key",
			values: `replicaCount: 3`,
			want:   []string{"'replicaCount' not allowed"},
		},
		{
			name:   "pipeline without staging",
			values: `config: {pipelines: [{name: web, platforms: [linux/amd64]}]}`,
			want:   []string{"/config/pipelines/0", "missing property 'staging'"},
		},
		// Cross-field rules the chart checks with fail, each with what to do about it.
		{
			name:   "no NATS at all",
			values: `nats: {url: ""}`,
			want:   []string{"nats.url is empty", "nats.embedded.enabled=true"},
		},
		{
			name:   "replicated streams on the single-node server",
			values: `{nats: {embedded: {enabled: true}}, config: {nats: {replicas: 3}}}`,
			want:   []string{"config.nats.replicas is 3", "single node"},
		},
		{
			name:   "signing pipeline without keys",
			values: `config: {pipelines: [{name: web, platforms: [linux/amd64], staging: r.example/web, source: {repo: https://git.example/web.git}, sign: true}]}`,
			want:   []string{"config.pipelines[0] (web) has sign: true", "signing.existingSecret"},
		},
		{
			name:   "keyless without Fulcio",
			values: `{signing: {keyless: {enabled: true, tsaURL: "https://tsa.example"}}, trustedRoot: {configMap: trust}}`,
			want:   []string{"signing.keyless.enabled is true", "signing.keyless.fulcioURL"},
		},
		{
			name:   "keyless without a trusted root",
			values: `signing: {keyless: {enabled: true, fulcioURL: "https://fulcio.example", tsaURL: "https://tsa.example"}}`,
			want:   []string{"signing.keyless.enabled is true", "trustedRoot.configMap"},
		},
		{
			name:   "keyless with legacy signatures",
			values: `{signing: {keyless: {enabled: true, fulcioURL: "https://fulcio.example", tsaURL: "https://tsa.example"}}, trustedRoot: {configMap: trust}, config: {sign: {format: legacy}}}`,
			want:   []string{"config.sign.format is legacy", "bundle"},
		},
		{
			name:   "keyless with another signing.tsaURL",
			values: `{signing: {tsaURL: "https://tsa2.example", keyless: {enabled: true, fulcioURL: "https://fulcio.example", tsaURL: "https://tsa.example"}}, trustedRoot: {configMap: trust}}`,
			want:   []string{"signing.keyless.tsaURL (https://tsa.example) and signing.tsaURL (https://tsa2.example) differ", "unset one of them"},
		},
		{
			name:   "KMS key and keyless",
			values: `{signing: {kms: {key: "awskms:///alias/promoter"}, keyless: {enabled: true, fulcioURL: "https://fulcio.example", tsaURL: "https://tsa.example"}}, trustedRoot: {configMap: trust}}`,
			want:   []string{"signing.kms.key is set and signing.keyless.enabled is true", "unset signing.kms.key"},
		},
		{
			name:   "KMS key and a Secret without its public key",
			values: `signing: {existingSecret: promoter-cosign, publicKeyKey: "", kms: {key: "awskms:///alias/promoter"}}`,
			want:   []string{"signing.kms.key and signing.existingSecret are set, but signing.publicKeyKey is empty", "unset signing.existingSecret"},
		},
		{
			name:   "KMS key that is a Kubernetes Secret",
			values: `signing: {kms: {key: "k8s://promoter/promoter-cosign"}}`,
			want:   []string{"signing.kms.key k8s://promoter/promoter-cosign is not a KMS key reference", "awskms://", "signing.existingSecret"},
		},
		{
			name:   "KMS key of the wrong shape",
			values: `signing: {kms: {key: "gcpkms://projects/acme/signing"}}`,
			want:   []string{"signing.kms.key gcpkms://projects/acme/signing is not a KMS key reference", "gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"},
		},
		{
			name:   "KMS key that is a file",
			values: `signing: {kms: {key: /etc/cosign.key}}`,
			want:   []string{"/signing/kms/key", "does not match pattern"},
		},
		{
			name:   "KMS credentials without a KMS key",
			values: `signing: {kms: {credentialsSecret: promoter-kms}}`,
			want:   []string{"signing.kms.credentialsSecret is set but signing.kms.key is empty"},
		},
		{
			name:   "KMS credentials file without the Secret",
			values: `signing: {kms: {key: "awskms:///alias/promoter", credentialsFileKey: key.json}}`,
			want:   []string{"signing.kms.credentialsFileKey is set but signing.kms.credentialsSecret is empty"},
		},
		{
			name:   "signing pipeline without keys names every signer",
			values: `{signing: {existingSecret: ""}, config: {pipelines: [{name: web, platforms: [linux/amd64], staging: r.example/web, source: {repo: https://git.example/web.git}, sign: true}]}}`,
			want:   []string{"config.pipelines[0] (web) has sign: true", "signing.kms.key"},
		},
		{
			name:   "timestamps without a signer",
			values: `{signing: {tsaURL: "https://tsa.example"}, trustedRoot: {configMap: trust}}`,
			want:   []string{"signing.tsaURL is set but nothing signs", "signing.kms.key"},
		},
		{
			name:   "timestamps and log without a trusted root",
			values: `signing: {existingSecret: promoter-cosign, tsaURL: "https://tsa.example", rekorURL: "https://rekor.example"}`,
			want:   []string{"signing.tsaURL and signing.rekorURL are set but trustedRoot.configMap is empty", "cosign trusted-root create"},
		},
		{
			name:   "log without a trusted root",
			values: `signing: {kms: {key: "hashivault://promoter"}, rekorURL: "https://rekor.example"}`,
			want:   []string{"signing.rekorURL is set but trustedRoot.configMap is empty"},
		},
		{
			name:   "timestamps with legacy signatures",
			values: `{signing: {existingSecret: promoter-cosign, tsaURL: "https://tsa.example"}, trustedRoot: {configMap: trust}, config: {sign: {format: legacy}}}`,
			want:   []string{"signing.tsaURL is set but config.sign.format is legacy", "bundle"},
		},
		{
			name:   "Rekor URL without scheme",
			values: `signing: {rekorURL: rekor.example}`,
			want:   []string{"/signing/rekorURL", "'rekor.example' does not match pattern"},
		},
		{
			name:   "TSA URL in the config",
			values: `config: {sign: {tsaURL: "https://tsa.example"}}`,
			want:   []string{"at '/config/sign'", "'tsaURL' not allowed"},
		},
		{
			name:   "Rekor URL in the config",
			values: `config: {sign: {rekorURL: "https://rekor.example"}}`,
			want:   []string{"at '/config/sign'", "'rekorURL' not allowed"},
		},
		{
			name:   "Fulcio URL without scheme",
			values: `signing: {keyless: {fulcioURL: fulcio.example}}`,
			want:   []string{"/signing/keyless/fulcioURL", "'fulcio.example' does not match pattern"},
		},
		{
			name:   "token shorter than Kubernetes allows",
			values: `signing: {keyless: {expirationSeconds: 60}}`,
			want:   []string{"/signing/keyless/expirationSeconds", "minimum"},
		},
		{
			name:   "Fulcio URL in the config",
			values: `config: {sign: {fulcioURL: "https://fulcio.example"}}`,
			want:   []string{"at '/config/sign'", "'fulcioURL' not allowed"},
		},
		{
			name:   "verify.trustedRoot at the mount without the ConfigMap",
			values: `config: {pipelines: [{name: api, platforms: [linux/amd64], staging: r.example/api, verify: {signers: [{issuer: "https://issuer.example", subject: ci}], trustedRoot: /etc/promoter/trust/trusted_root.json}}]}`,
			want:   []string{"config.pipelines[0] (api) has verify.trustedRoot /etc/promoter/trust/trusted_root.json", "trustedRoot.configMap is empty"},
		},
		{
			name:   "verify key at the mount without the Secret",
			values: `config: {pipelines: [{name: api, platforms: [linux/amd64], staging: r.example/api, verify: {signers: [{key: /etc/promoter/verify/ci.pub}]}}]}`,
			want:   []string{"config.pipelines[0] (api) has verify.signers[0].key /etc/promoter/verify/ci.pub", "verify.publicKeys.secret is empty"},
		},
		{
			name:   "no registry token",
			values: `webhooks: {registryTokenKey: ""}`,
			want:   []string{"webhooks.registryTokenKey is empty", "insecureNoAuth"},
		},
		{
			name:   "alert window empty",
			values: `prometheusRule: {alerts: {promotionFailures: {window: ""}}}`,
			want:   []string{"/prometheusRule/alerts/promotionFailures/window", "minLength: got 0, want 1"},
		},
		{
			name:   "alert for not a duration",
			values: `prometheusRule: {alerts: {jetStreamUnavailable: {for: 2 minutes}}}`,
			want:   []string{"/prometheusRule/alerts/jetStreamUnavailable/for", "does not match pattern"},
		},
		{
			name:   "5xx ratio over 1",
			values: `prometheusRule: {alerts: {receiver5xx: {ratio: 5}}}`,
			want:   []string{"/prometheusRule/alerts/receiver5xx/ratio", "maximum"},
		},
		{
			name:   "unknown alert",
			values: `prometheusRule: {alerts: {diskFull: {enabled: true}}}`,
			want:   []string{"at '/prometheusRule/alerts'", "'diskFull' not allowed"},
		},
		{
			name:   "selector not a matcher",
			values: `prometheusRule: {selector: "{namespace=\"x\"}"}`,
			want:   []string{"/prometheusRule/selector", "does not match pattern"},
		},
		{
			name:   "image digest not a digest",
			values: `image: {digest: latest}`,
			want:   []string{"/image/digest", "'latest' does not match pattern"},
		},
		{
			name:   "duplicate group",
			values: `builder: {groups: [{name: a, platforms: [linux/amd64]}, {name: a, platforms: [linux/arm64]}]}`,
			want:   []string{`"a" is used twice`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tt.values+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := h.template(t, file)
			if err == nil {
				t.Fatalf("helm template accepted %s; rendered:\n%s", tt.values, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestKubeDryRun sends every object of every render to a real kube-apiserver as a Strict
// server-side dry-run (unknown or mistyped fields are errors), then checks Pod Security
// admission on the pods the workloads would create.
func TestKubeDryRun(t *testing.T) {
	h := newHelm(t)
	renders := map[string][]*unstructured.Unstructured{}
	for _, vs := range valueSets {
		out, err := h.template(t, valuesArgs(vs.values)...)
		if err != nil {
			t.Fatal(err)
		}
		renders[vs.name] = decodeObjects(t, out)
	}

	k := testenv.StartKube(t)
	ctx := t.Context()
	cfg := rest.CopyConfig(k.Config)
	warnings := &warningRecorder{}
	cfg.WarningHandler = warnings
	kc := newKubeClient(t, cfg)

	// The CRD-backed kinds need their CRDs; the release namespace must exist for real.
	for file, kind := range map[string]string{
		"testdata/servicemonitor-crd.yaml": "ServiceMonitor",
		"testdata/prometheusrule-crd.yaml": "PrometheusRule",
	} {
		kc.create(t, ctx, readObject(t, file), false)
		kc.waitForKind(t, ctx, schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: kind})
	}
	kc.create(t, ctx, namespaceObject(namespace, nil), false)
	// The full values name a PriorityClass, which the cluster must provide.
	kc.create(t, ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "scheduling.k8s.io/v1",
		"kind":       "PriorityClass",
		"metadata":   map[string]any{"name": "promoter-critical"},
		"value":      int64(100000),
	}}, false)

	// NOTES.txt only renders on install; helm install --dry-run=server renders it against
	// this cluster without creating anything. It runs before the chart's namespaces are
	// created below, which helm would refuse to adopt into a release.
	kubeconfig := k.Kubeconfig(t)
	for _, vs := range valueSets {
		t.Run("notes/"+vs.name, func(t *testing.T) {
			args := []string{"install", release, chartDir, "--namespace", namespace, "--dry-run=server", "--kubeconfig", kubeconfig}
			if vs.values != "" {
				args = append(args, "--values", vs.values)
			}
			out, stderr, err := h.run(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			_, notes, found := strings.Cut(out, "\nNOTES:\n")
			if !found {
				t.Fatalf("helm install printed no NOTES:\n%s", out)
			}
			compareGolden(t, filepath.Join("testdata", vs.name+".notes.golden.txt"), notes)
		})
	}

	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			objs := renders[vs.name]
			// Namespaces first, for real, so the namespaced objects in them can be checked.
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					kc.create(t, ctx, o, false)
				}
			}
			for _, ns := range referencedNamespaces(objs) {
				kc.create(t, ctx, namespaceObject(ns, nil), false)
			}
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					continue
				}
				kc.create(t, ctx, o, true)
			}
		})
	}

	d := &dryRun{kc: kc, k: k, renders: renders, warnings: warnings}
	t.Run("pod security restricted", d.podSecurityRestricted)
	t.Run("builder RBAC", d.builderRBAC)
	t.Run("builder namespace admits rootless BuildKit", d.builderNamespaceAdmitsBuildKit)
}

// dryRun is the cluster TestKubeDryRun checks the chart's renders against, for its subtests.
type dryRun struct {
	kc       *kubeClient
	k        *testenv.Kube
	renders  map[string][]*unstructured.Unstructured // by valueSets name
	warnings *warningRecorder
}

func (d *dryRun) podSecurityRestricted(t *testing.T) {
	ctx := t.Context()
	const restricted = "psa-restricted"
	d.kc.create(t, ctx, namespaceObject(restricted, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn":            "restricted",
		"pod-security.kubernetes.io/warn-version":    "latest",
	}), false)

	// Control: a pod without a security context is refused here, so the admissions
	// below are real decisions.
	bare := podObject("bare", restricted, map[string]any{
		"containers": []any{map[string]any{"name": "c", "image": "busybox"}},
	})
	if err := d.kc.tryCreate(ctx, bare, true); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a pod with no securityContext in %s: got %v, want a PodSecurity violation", restricted, err)
	}

	var checked int
	for _, vs := range valueSets {
		for _, o := range d.renders[vs.name] {
			switch o.GetKind() {
			case "Deployment", "StatefulSet":
			default:
				continue
			}
			checked++
			name := vs.name + "/" + o.GetKind() + "/" + o.GetName()
			// Workloads only get warnings from PodSecurity; there must be none.
			w := o.DeepCopy()
			w.SetNamespace(restricted)
			d.warnings.reset()
			if err := d.kc.tryCreate(ctx, w, true); err != nil {
				t.Errorf("%s in %s: %v", name, restricted, err)
			}
			if ws := d.warnings.reset(); len(ws) > 0 {
				t.Errorf("%s: Pod Security warnings: %s", name, strings.Join(ws, "; "))
			}
			// A Pod from the template gets a real admission decision.
			spec, found, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
			if err != nil || !found {
				t.Fatalf("%s: no spec.template.spec (%v)", name, err)
			}
			addClaimVolumes(t, o, spec)
			pod := podObject(strings.ToLower(vs.name+"-"+o.GetKind()+"-"+o.GetName()), restricted, spec)
			if err := d.kc.tryCreate(ctx, pod, true); err != nil {
				t.Errorf("%s: its pod is refused by Pod Security restricted: %v", name, err)
			}
		}
	}
	// default: daemon + 1 agent; full: daemon + 2 agents + NATS; external, keyless, kms
	// and witnessed: daemon + 1 agent each.
	if want := 14; checked != want {
		t.Errorf("checked %d workloads, want %d", checked, want)
	}
}

func (d *dryRun) builderRBAC(t *testing.T) {
	ctx := t.Context()
	// The default render's Role and RoleBinding, created for real, must grant the agent's
	// ServiceAccount everything the Kubernetes executor does (builders.Role), in the
	// builder namespace only, and nothing on Secrets.
	var builderNS, sa string
	for _, o := range d.renders["default"] {
		switch o.GetKind() {
		case "Role", "RoleBinding":
			builderNS = o.GetNamespace()
			d.kc.create(t, ctx, o, false)
		case "ServiceAccount":
			if strings.HasSuffix(o.GetName(), "-builder") {
				sa = "system:serviceaccount:" + o.GetNamespace() + ":" + o.GetName()
			}
		}
	}
	if builderNS == "" || sa == "" {
		t.Fatalf("the default render has no builder Role (namespace %q) or ServiceAccount (%q)", builderNS, sa)
	}
	type access struct{ ns, group, resource, sub, verb string }
	var want []access
	for _, r := range builders.Role(builderNS).Rules {
		for _, res := range r.Resources {
			resource, sub, _ := strings.Cut(res, "/")
			for _, v := range r.Verbs {
				want = append(want, access{builderNS, r.APIGroups[0], resource, sub, v})
			}
		}
	}
	denied := []access{
		{builderNS, "", "secrets", "", "get"},
		{builderNS, "", "pods", "", "create"},
		{namespace, "batch", "jobs", "", "create"},
		{"default", "batch", "jobs", "", "create"},
	}
	check := func(a access, allowed bool) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.ns, Group: a.group, Resource: a.resource, Subresource: a.sub, Verb: a.verb,
			},
		}}
		// RBAC objects just created take a moment to reach the authorizer's cache: a grant
		// is waited for; a denial is checked once, as waiting could only hide a grant.
		timeout := 10 * time.Second
		if !allowed {
			timeout = 0
		}
		var apiErr error
		err := testenv.WaitFor(timeout, func() error {
			got, err := d.k.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				apiErr = err // no answer to wait for
				return nil
			}
			if got.Status.Allowed != allowed {
				return fmt.Errorf("%s %s %+v: allowed=%v, want %v (%s)", sa, a.verb, a, got.Status.Allowed, allowed, got.Status.Reason)
			}
			return nil
		})
		if apiErr != nil {
			t.Fatalf("SubjectAccessReview %+v: %v", a, apiErr)
		}
		if err != nil {
			t.Error(err)
		}
	}
	for _, a := range want {
		check(a, true)
	}
	for _, a := range denied {
		check(a, false)
	}
}

func (d *dryRun) builderNamespaceAdmitsBuildKit(t *testing.T) {
	ctx := t.Context()
	// Why the builder namespace is privileged: the rootless BuildKit pod, which is
	// neither privileged nor root, is refused by baseline and admitted there.
	var builderNS string
	for _, o := range d.renders["default"] {
		if o.GetKind() == "Namespace" {
			builderNS = o.GetName()
			if got := o.GetLabels()["pod-security.kubernetes.io/enforce"]; got != "privileged" {
				t.Errorf("namespace %s: enforce label %q, want privileged", builderNS, got)
			}
		}
	}
	if builderNS == "" {
		t.Fatal("the default render creates no builder namespace")
	}
	const baseline = "psa-baseline"
	d.kc.create(t, ctx, namespaceObject(baseline, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}), false)
	if err := d.kc.tryCreate(ctx, buildkitPod(baseline), true); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Errorf("rootless BuildKit pod in a baseline namespace: got %v, want a PodSecurity violation", err)
	}
	if err := d.kc.tryCreate(ctx, buildkitPod(builderNS), true); err != nil {
		t.Errorf("rootless BuildKit pod in the builder namespace %s: %v", builderNS, err)
	}
}

// addClaimVolumes adds to a StatefulSet's pod spec the volumes its controller would add for
// the volumeClaimTemplates (claim <template>-<set>-0), so the pod is complete.
func addClaimVolumes(t *testing.T, o *unstructured.Unstructured, spec map[string]any) {
	t.Helper()
	claims, _, err := unstructured.NestedSlice(o.Object, "spec", "volumeClaimTemplates")
	if err != nil {
		t.Fatalf("%s %s: volumeClaimTemplates: %v", o.GetKind(), o.GetName(), err)
	}
	volumes, _, _ := unstructured.NestedSlice(spec, "volumes")
	for _, c := range claims {
		name, _, _ := unstructured.NestedString(c.(map[string]any), "metadata", "name")
		volumes = append(volumes, map[string]any{
			"name":                  name,
			"persistentVolumeClaim": map[string]any{"claimName": name + "-" + o.GetName() + "-0"},
		})
	}
	if len(volumes) > 0 {
		spec["volumes"] = volumes
	}
}

// buildkitPod is the shape of a rootless BuildKit build pod: non-root, no privilege, but
// seccomp and AppArmor Unconfined.
func buildkitPod(ns string) *unstructured.Unstructured {
	return podObject("buildkit", ns, map[string]any{
		"containers": []any{map[string]any{
			"name":  "buildkit",
			"image": builders.DefaultImage,
			"securityContext": map[string]any{
				"runAsUser":       int64(1000),
				"runAsGroup":      int64(1000),
				"seccompProfile":  map[string]any{"type": "Unconfined"},
				"appArmorProfile": map[string]any{"type": "Unconfined"},
			},
		}},
	})
}

func podObject(name, ns string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
}

func namespaceObject(name string, labels map[string]string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	o.SetName(name)
	o.SetLabels(labels)
	return o
}

// referencedNamespaces lists the namespaces objects live in that the render does not create
// itself (the builder namespace when builder.namespace.create is false).
func referencedNamespaces(objs []*unstructured.Unstructured) []string {
	created := map[string]bool{namespace: true}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			created[o.GetName()] = true
		}
	}
	var out []string
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && !created[ns] {
			created[ns] = true
			out = append(out, ns)
		}
	}
	return out
}

// kubeClient creates unstructured objects through the dynamic client, resolving kinds with
// discovery.
type kubeClient struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKubeClient(t *testing.T, cfg *rest.Config) *kubeClient {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeClient{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

func (c *kubeClient) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("no API resource for %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			return nil, fmt.Errorf("%s %s is namespaced but has no metadata.namespace (helm template does not add one)", gvk.Kind, o.GetName())
		}
		return c.dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// tryCreate creates o, as a Strict dry-run when dryRun is set (unknown and duplicate fields
// are errors, every admission plugin runs, nothing is stored).
func (c *kubeClient) tryCreate(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	r, err := c.resource(o)
	if err != nil {
		return err
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = r.Create(ctx, o, opts)
	return err
}

// create is tryCreate failing the test; a real create of something that exists is fine.
func (c *kubeClient) create(t *testing.T, ctx context.Context, o *unstructured.Unstructured, dryRun bool) {
	t.Helper()
	err := c.tryCreate(ctx, o, dryRun)
	if err != nil && !(apierrors.IsAlreadyExists(err) && !dryRun) {
		t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
}

// waitForKind waits until discovery serves gvk (a new CRD takes a moment to be established).
func (c *kubeClient) waitForKind(t *testing.T, ctx context.Context, gvk schema.GroupVersionKind) {
	t.Helper()
	var stopped error
	err := testenv.WaitFor(30*time.Second, func() error {
		if stopped = ctx.Err(); stopped != nil {
			return nil // the test is over: stop waiting
		}
		c.mapper.Reset()
		_, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		return err
	})
	if err = errors.Join(err, stopped); err != nil {
		t.Fatalf("%s is not served after its CRD was created: %v", gvk, err)
	}
}

// warningRecorder collects the apiserver's Warning headers (Pod Security warns on
// workloads instead of refusing them).
type warningRecorder struct {
	mu sync.Mutex
	ws []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ws = append(w.ws, text)
}

func (w *warningRecorder) reset() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := w.ws
	w.ws = nil
	return ws
}

// decodeObjects splits a multi-document YAML stream into objects, skipping empty documents.
func decodeObjects(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading rendered YAML: %v", err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("rendered YAML document is invalid: %v\n%s", err, doc)
		}
		if string(bytes.TrimSpace(j)) == "null" {
			continue
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			t.Fatalf("rendered document is not a Kubernetes object: %v\n%s", err, doc)
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		t.Fatal("helm template rendered no objects")
	}
	return objs
}

func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, string(b))
	if len(objs) != 1 {
		t.Fatalf("%s holds %d objects, want 1", path, len(objs))
	}
	return objs[0]
}

// TestVendorReceiverTokenIsEnough: a cluster whose registry is Harbor (or another vendor's)
// needs that receiver's token only, as the daemon does, not the distribution one.
func TestVendorReceiverTokenIsEnough(t *testing.T) {
	h := newHelm(t)
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, []byte("webhooks: {registryTokenKey: \"\", harborTokenKey: harbor-token}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := h.template(t, valuesArgs(file)...)
	if err != nil {
		t.Fatalf("rendering with only webhooks.harborTokenKey: %v", err)
	}
	daemons := 0
	for _, o := range decodeObjects(t, out) {
		text, _, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
		if o.GetKind() != "ConfigMap" || !strings.Contains(text, "pipelines") {
			continue // the builder's configuration has no receivers
		}
		daemons++
		cfg := loadRendered(t, text) // it points file: references at a copy of the mounts
		if cfg.Auth.RegistryToken.IsSet() || !strings.HasSuffix(cfg.Auth.Harbor.Token.String(), "/webhooks/harbor-token") {
			t.Errorf("ConfigMap %s: registryToken %q, harbor token %q; want only the Harbor one", o.GetName(), cfg.Auth.RegistryToken, cfg.Auth.Harbor.Token)
		}
	}
	if daemons != 1 {
		t.Errorf("%d daemon ConfigMaps rendered, want 1", daemons)
	}
}

// TestEveryReceiverIsWired binds the chart to the receivers table, which it cannot import:
// for each webhook receiver (events.Receivers), its webhooks.<key>Key alone is mounted from
// the webhooks Secret and referred to as the receiver's configuration key, and a registry
// receiver's key is enough to render, as its token is enough for the daemon to start.
func TestEveryReceiverIsWired(t *testing.T) {
	h := newHelm(t)
	for _, e := range events.Receivers {
		t.Run(e.Name, func(t *testing.T) {
			key := chartSecretValue(e.SecretKey)
			secretKey := e.Name + "-secret"
			values := fmt.Sprintf("webhooks: {%s: %s}\n", key, secretKey)
			if e.Registry && key != "registryTokenKey" {
				values = fmt.Sprintf("webhooks: {registryTokenKey: \"\", %s: %s}\n", key, secretKey)
			}
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(values), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := h.template(t, valuesArgs(file)...)
			if err != nil {
				t.Fatalf("rendering with webhooks.%s: %v", key, err)
			}
			var configs, mounts int
			for _, o := range decodeObjects(t, out) {
				text, _, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
				if o.GetKind() == "ConfigMap" && strings.Contains(text, "pipelines") {
					configs++
					cfg := loadRendered(t, text) // it points file: references at a copy of the mounts
					if ref, ok := cfg.Auth.Secret(e.SecretKey); !ok || !strings.HasSuffix(ref.String(), "/webhooks/"+secretKey) {
						t.Errorf("%s = %q, want a file: reference to the mounted %s", e.SecretKey, ref, secretKey)
					}
				}
				if o.GetKind() == "Deployment" && o.GetLabels()["app.kubernetes.io/component"] == "daemon" {
					mounts += webhookItems(t, o)[secretKey]
				}
			}
			if configs != 1 || mounts != 1 {
				t.Errorf("%d daemon ConfigMaps and %d mounts of %s, want 1 each", configs, mounts, secretKey)
			}
		})
	}
}

// chartSecretValue is the chart's webhooks value naming the Secret key of the secret at a
// configuration key: auth.registryToken is registryTokenKey, auth.github.secret is
// githubSecretKey.
func chartSecretValue(configKey string) string {
	parts := strings.Split(strings.TrimPrefix(configKey, "auth."), ".")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "") + "Key"
}

// webhookItems counts the keys of the webhooks Secret the Deployment d mounts.
func webhookItems(t *testing.T, d *unstructured.Unstructured) map[string]int {
	t.Helper()
	volumes, _, err := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	if err != nil {
		t.Fatalf("Deployment %s: volumes: %v", d.GetName(), err)
	}
	out := map[string]int{}
	for _, v := range volumes {
		vol, _ := v.(map[string]any)
		if vol["name"] != "webhooks" {
			continue
		}
		items, _, _ := unstructured.NestedSlice(vol, "secret", "items")
		for _, it := range items {
			if m, _ := it.(map[string]any); m != nil {
				out[fmt.Sprint(m["key"])]++
			}
		}
	}
	return out
}

// TestImageByDigest: with image.digest set, every promoter container (the daemon and each
// builder agent, across every render) runs repository@digest, never a tag; without it,
// the tag.
func TestImageByDigest(t *testing.T) {
	h := newHelm(t)
	const (
		repo   = "registry.example/acme/promoter"
		digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	)
	tests := []struct {
		name   string
		values string // file under testdata, or "" for the chart defaults
		set    []string
		want   string
	}{
		{name: "default by digest", set: []string{"image.digest=" + digest}, want: repo + "@" + digest},
		{name: "full by digest", values: "testdata/values-full.yaml", set: []string{"image.digest=" + digest}, want: repo + "@" + digest},
		{name: "digest wins over tag", set: []string{"image.digest=" + digest, "image.tag=v9.9.9"}, want: repo + "@" + digest},
		{name: "tag without digest", set: []string{"image.tag=v9.9.9"}, want: repo + ":v9.9.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion, "--set", "image.repository=" + repo}
			if tt.values != "" {
				args = append(args, "--values", tt.values)
			}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out, stderr, err := h.run(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			var daemons, agents int
			for _, o := range decodeObjects(t, out) {
				containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				for _, c := range containers {
					c := c.(map[string]any)
					image, _ := c["image"].(string)
					if !strings.HasPrefix(image, repo) {
						continue // NATS, BuildKit
					}
					args, _, _ := unstructured.NestedStringSlice(c, "args")
					switch {
					case len(args) > 0 && args[0] == "serve":
						daemons++
					case len(args) > 0 && args[0] == "builder":
						agents++
					}
					if image != tt.want {
						t.Errorf("%s %s container %v: image %s, want %s", o.GetKind(), o.GetName(), c["name"], image, tt.want)
					}
				}
			}
			if daemons != 1 || agents == 0 {
				t.Errorf("checked %d daemon and %d agent containers, want 1 and at least 1", daemons, agents)
			}
		})
	}
}

// TestSigning checks what each signer mounts and renders. With signing.keyless the daemon
// gets a projected service-account token for Fulcio (audience sigstore, never the API token),
// the trusted root from its ConfigMap, the config's sign.* keyless keys and no keys.cosign;
// with the key pair, none of that. With signing.kms.key the private key is the KMS
// reference (nothing mounted for it), its credentials come from a Secret as environment
// variables and optionally a file, or from workload identity (nothing at all); an old public
// key of signing.existingSecret is listed in keys.public with the KMS key. signing.tsaURL
// and signing.rekorURL witness any signer against the mounted trusted root.
func TestSigning(t *testing.T) {
	h := newHelm(t)
	keyless := map[string]any{
		"format":        "bundle",
		"fulcioURL":     "https://fulcio.example",
		"identityToken": "/var/run/sigstore/cosign/oidc-token",
		"tsaURL":        "https://tsa.example",
		"trustedRoot":   "/etc/promoter/trust/trusted_root.json",
	}
	const gcpKey = "gcpkms://projects/acme/locations/europe-west1/keyRings/promoter/cryptoKeys/signing"
	tests := []struct {
		name   string
		values string // file under testdata
		extra  string // values written over it, or ""
		// wantToken is the projected token source, nil for none.
		wantToken *token
		// wantMounts are the daemon's read-only mounts by volume name, beyond config, data,
		// tmp and webhooks.
		wantMounts map[string]string
		// wantSigningItems are the keys of signing.existingSecret mounted.
		wantSigningItems []string
		wantSign         map[string]any
		wantKeys         map[string]any
		// wantEnvFrom are the Secrets the daemon's environment comes from.
		wantEnvFrom []string
		// wantCredentialsFile is GOOGLE_APPLICATION_CREDENTIALS, "" for unset.
		wantCredentialsFile string
	}{
		{
			name:      "keyless with trusted root and CI keys and the old public key",
			values:    "testdata/values-keyless.yaml",
			wantToken: &token{Audience: "sigstore", ExpirationSeconds: 600, Path: "oidc-token"},
			wantMounts: map[string]string{
				"signing":        "/etc/promoter/signing",
				"sigstore-token": "/var/run/sigstore/cosign",
				"trusted-root":   "/etc/promoter/trust",
				"verify-keys":    "/etc/promoter/verify",
			},
			wantSigningItems: []string{"cosign.pub"},
			wantSign:         keyless,
			wantKeys:         map[string]any{"public": "/etc/promoter/signing/cosign.pub"},
		},
		{
			name:      "keyless only with a longer token for another audience",
			values:    "testdata/values-keyless.yaml",
			extra:     `{signing: {existingSecret: "", keyless: {audience: fulcio, expirationSeconds: 3600}}, verify: {publicKeys: {secret: ""}}, config: {pipelines: []}}`,
			wantToken: &token{Audience: "fulcio", ExpirationSeconds: 3600, Path: "oidc-token"},
			wantMounts: map[string]string{
				"sigstore-token": "/var/run/sigstore/cosign",
				"trusted-root":   "/etc/promoter/trust",
			},
			wantSign: keyless,
		},
		{
			name:   "key pair with a trusted root for verify only",
			values: "testdata/values-full.yaml",
			wantMounts: map[string]string{
				"signing":       "/etc/promoter/signing",
				"trusted-root":  "/etc/promoter/trust",
				"verify-keys":   "/etc/promoter/verify",
				"docker-config": "/etc/promoter/docker",
			},
			wantSigningItems: []string{"cosign.key", "cosign.password", "cosign.pub"},
			wantSign:         map[string]any{"format": "legacy"},
			wantKeys: map[string]any{
				"cosign":   "/etc/promoter/signing/cosign.key",
				"password": "file:/etc/promoter/signing/cosign.password",
				"public":   "/etc/promoter/signing/cosign.pub",
			},
		},
		{
			name:      "keyless with signing.tsaURL and a Rekor log",
			values:    "testdata/values-keyless.yaml",
			extra:     `{signing: {keyless: {tsaURL: ""}, tsaURL: "https://tsa.example", rekorURL: "https://rekor.example"}}`,
			wantToken: &token{Audience: "sigstore", ExpirationSeconds: 600, Path: "oidc-token"},
			wantMounts: map[string]string{
				"signing":        "/etc/promoter/signing",
				"sigstore-token": "/var/run/sigstore/cosign",
				"trusted-root":   "/etc/promoter/trust",
				"verify-keys":    "/etc/promoter/verify",
			},
			wantSigningItems: []string{"cosign.pub"},
			wantSign:         withKeys(keyless, "rekorURL", "https://rekor.example"),
			wantKeys:         map[string]any{"public": "/etc/promoter/signing/cosign.pub"},
		},
		{
			name:      "keyless with the same TSA in both values",
			values:    "testdata/values-keyless.yaml",
			extra:     `{signing: {tsaURL: "https://tsa.example"}}`,
			wantToken: &token{Audience: "sigstore", ExpirationSeconds: 600, Path: "oidc-token"},
			wantMounts: map[string]string{
				"signing":        "/etc/promoter/signing",
				"sigstore-token": "/var/run/sigstore/cosign",
				"trusted-root":   "/etc/promoter/trust",
				"verify-keys":    "/etc/promoter/verify",
			},
			wantSigningItems: []string{"cosign.pub"},
			wantSign:         keyless,
			wantKeys:         map[string]any{"public": "/etc/promoter/signing/cosign.pub"},
		},
		{
			name:   "key pair timestamped and logged",
			values: "testdata/values-witnessed.yaml",
			wantMounts: map[string]string{
				"signing":      "/etc/promoter/signing",
				"trusted-root": "/etc/promoter/trust",
			},
			wantSigningItems: []string{"cosign.key", "cosign.password", "cosign.pub"},
			wantSign: map[string]any{
				"format":      "bundle",
				"tsaURL":      "https://tsa.sigstore.internal.example",
				"rekorURL":    "https://rekor.sigstore.internal.example",
				"trustedRoot": "/etc/promoter/trust/trusted_root.json",
			},
			wantKeys: map[string]any{
				"cosign":   "/etc/promoter/signing/cosign.key",
				"password": "file:/etc/promoter/signing/cosign.password",
				"public":   "/etc/promoter/signing/cosign.pub",
			},
		},
		{
			name:   "GCP KMS key with a credentials file and the old public key, witnessed",
			values: "testdata/values-kms.yaml",
			wantMounts: map[string]string{
				"signing":         "/etc/promoter/signing",
				"trusted-root":    "/etc/promoter/trust",
				"kms-credentials": "/etc/promoter/kms",
			},
			wantSigningItems: []string{"cosign.pub"},
			wantSign: map[string]any{
				"format":      "bundle",
				"tsaURL":      "https://timestamp.sigstore.dev",
				"rekorURL":    "https://log2025-1.rekor.sigstore.dev",
				"trustedRoot": "/etc/promoter/trust/trusted_root.json",
			},
			wantKeys: map[string]any{
				"cosign": gcpKey,
				"public": []any{"/etc/promoter/signing/cosign.pub", gcpKey},
			},
			wantEnvFrom:         []string{"promoter-kms"},
			wantCredentialsFile: "/etc/promoter/kms/credentials.json",
		},
		{
			name:        "Azure KMS key with credentials in the environment",
			values:      "testdata/values-kms.yaml",
			extra:       `{signing: {existingSecret: "", tsaURL: "", rekorURL: "", kms: {key: "azurekms://acme.vault.azure.net/promoter", credentialsSecret: promoter-azure, credentialsFileKey: ""}}, trustedRoot: {configMap: ""}}`,
			wantMounts:  map[string]string{},
			wantSign:    map[string]any{"format": "bundle"},
			wantKeys:    map[string]any{"cosign": "azurekms://acme.vault.azure.net/promoter"},
			wantEnvFrom: []string{"promoter-azure"},
		},
		{
			name:       "AWS KMS key through IRSA with nothing mounted and no environment",
			values:     "testdata/values-kms.yaml",
			extra:      `{signing: {existingSecret: "", tsaURL: "", rekorURL: "", kms: {key: "awskms:///alias/promoter", credentialsSecret: "", credentialsFileKey: ""}}, trustedRoot: {configMap: ""}, daemon: {serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/promoter"}}}}`,
			wantMounts: map[string]string{},
			wantSign:   map[string]any{"format": "bundle"},
			wantKeys:   map[string]any{"cosign": "awskms:///alias/promoter"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := []string{tt.values}
			if tt.extra != "" {
				f := filepath.Join(t.TempDir(), "values.yaml")
				if err := os.WriteFile(f, []byte(tt.extra+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				files = append(files, f)
			}
			deployment, configMap := renderDaemon(t, h, files...)
			spec, _, _ := unstructured.NestedMap(deployment.Object, "spec", "template", "spec")
			if auto, _, _ := unstructured.NestedBool(spec, "automountServiceAccountToken"); auto {
				t.Error("automountServiceAccountToken is true, want false: the daemon needs no API token")
			}
			gotToken, gotItems := signingVolumes(t, spec)
			if diff := cmp.Diff(tt.wantToken, gotToken); diff != "" {
				t.Errorf("projected service-account token (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSigningItems, gotItems); diff != "" {
				t.Errorf("signing Secret keys mounted (-want +got):\n%s", diff)
			}
			containers, _, _ := unstructured.NestedSlice(spec, "containers")
			container := containers[0].(map[string]any)
			gotEnvFrom, gotFile := containerEnv(container)
			if diff := cmp.Diff(tt.wantEnvFrom, gotEnvFrom); diff != "" {
				t.Errorf("daemon envFrom Secrets (-want +got):\n%s", diff)
			}
			if gotFile != tt.wantCredentialsFile {
				t.Errorf("GOOGLE_APPLICATION_CREDENTIALS = %q, want %q", gotFile, tt.wantCredentialsFile)
			}
			if diff := cmp.Diff(tt.wantMounts, readOnlyMounts(t, container)); diff != "" {
				t.Errorf("daemon mounts (-want +got):\n%s", diff)
			}

			text, _, _ := unstructured.NestedString(configMap.Object, "data", "config.yaml")
			var c map[string]any
			if err := yaml.Unmarshal([]byte(text), &c); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantSign, c["sign"]); diff != "" {
				t.Errorf("config sign (-want +got):\n%s", diff)
			}
			var gotKeys map[string]any
			if k, ok := c["keys"].(map[string]any); ok {
				gotKeys = k
			}
			if diff := cmp.Diff(tt.wantKeys, gotKeys); diff != "" {
				t.Errorf("config keys (-want +got):\n%s", diff)
			}
			cfg := loadRendered(t, text)
			if got, want := cfg.Sign.Keyless(), tt.wantToken != nil; got != want {
				t.Errorf("config.Load: keyless %v, want %v", got, want)
			}
		})
	}
}

// token is a projected service-account token source of the daemon's pod.
type token struct {
	Audience          string `json:"audience"`
	ExpirationSeconds int64  `json:"expirationSeconds"`
	Path              string `json:"path"`
}

// renderDaemon renders the chart with the values files and returns the daemon's
// Deployment and ConfigMap.
func renderDaemon(t *testing.T, h helm, files ...string) (deployment, configMap *unstructured.Unstructured) {
	t.Helper()
	out, err := h.template(t, files...)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range decodeObjects(t, out) {
		switch {
		case o.GetKind() == "Deployment" && o.GetLabels()["app.kubernetes.io/component"] == "daemon":
			deployment = o
		case o.GetKind() == "ConfigMap" && o.GetName() == release:
			configMap = o
		}
	}
	if deployment == nil || configMap == nil {
		t.Fatalf("no daemon Deployment (%v) or ConfigMap (%v) rendered", deployment != nil, configMap != nil)
	}
	return deployment, configMap
}

// signingVolumes are, in the pod spec, the projected service-account token (nil for none;
// more than one is an error) and the keys mounted of the signing Secret.
func signingVolumes(t *testing.T, spec map[string]any) (*token, []string) {
	t.Helper()
	var gotToken *token
	var gotItems []string
	volumes, _, _ := unstructured.NestedSlice(spec, "volumes")
	for _, v := range volumes {
		v := v.(map[string]any)
		sources, _, _ := unstructured.NestedSlice(v, "projected", "sources")
		for _, src := range sources {
			sat, found, _ := unstructured.NestedMap(src.(map[string]any), "serviceAccountToken")
			if !found {
				continue
			}
			var tok token
			b, _ := yaml.Marshal(sat)
			if err := yaml.Unmarshal(b, &tok); err != nil {
				t.Fatal(err)
			}
			if gotToken != nil {
				t.Errorf("more than one projected service-account token")
			}
			gotToken = &tok
		}
		if v["name"] == "signing" {
			items, _, _ := unstructured.NestedSlice(v, "secret", "items")
			for _, it := range items {
				gotItems = append(gotItems, it.(map[string]any)["key"].(string))
			}
		}
	}
	return gotToken, gotItems
}

// containerEnv is the container's envFrom Secrets and its GOOGLE_APPLICATION_CREDENTIALS.
func containerEnv(container map[string]any) (envFrom []string, credentialsFile string) {
	from, _, _ := unstructured.NestedSlice(container, "envFrom")
	for _, e := range from {
		name, _, _ := unstructured.NestedString(e.(map[string]any), "secretRef", "name")
		envFrom = append(envFrom, name)
	}
	env, _, _ := unstructured.NestedSlice(container, "env")
	for _, e := range env {
		if e := e.(map[string]any); e["name"] == "GOOGLE_APPLICATION_CREDENTIALS" {
			credentialsFile, _ = e["value"].(string)
		}
	}
	return envFrom, credentialsFile
}

// readOnlyMounts are the container's mounts beyond config, data, tmp and webhooks, by
// volume: each must be read-only and away from the API token's path.
func readOnlyMounts(t *testing.T, container map[string]any) map[string]string {
	t.Helper()
	mounts, _, _ := unstructured.NestedSlice(container, "volumeMounts")
	got := map[string]string{}
	for _, m := range mounts {
		m := m.(map[string]any)
		name, path := m["name"].(string), m["mountPath"].(string)
		if strings.HasPrefix(path, "/var/run/secrets/kubernetes.io/") {
			t.Errorf("volume %s is mounted at %s, the API token's path", name, path)
		}
		switch name {
		case "config", "data", "tmp", "webhooks":
			continue
		}
		if ro, _ := m["readOnly"].(bool); !ro {
			t.Errorf("volume %s at %s is not read-only", name, path)
		}
		got[name] = path
	}
	return got
}

// withKeys returns a copy of m with the key-value pairs kv set.
func withKeys(m map[string]any, kv ...string) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
