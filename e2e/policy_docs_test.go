package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// The admission controllers whose CRDs the README's policies are checked against: the
// releases the snippets target, as the Go module proxy serves them (their module zips hold
// the CRD YAML the projects install).
const (
	kyvernoModule          = "github.com/kyverno/kyverno@v1.19.1"
	policyControllerModule = "github.com/sigstore/policy-controller@v0.13.1"
)

// policyCRDs are the CRD files, by module, that the README's policies need.
var policyCRDs = map[string][]string{
	kyvernoModule: {
		"config/crds/kyverno/kyverno.io_clusterpolicies.yaml",
		"config/crds/policies.kyverno.io/policies.kyverno.io_imagevalidatingpolicies.yaml",
	},
	policyControllerModule: {
		"config/300-clusterimagepolicy.yaml",
		"config/300-trustroot.yaml",
	},
}

// docSnippet is a fenced block of README.md marked `<!-- checked: KIND -->` on the line
// before its fence.
type docSnippet struct {
	kind string
	line int // of the fence, 1-based
	text string
}

func (s docSnippet) String() string { return fmt.Sprintf("README.md:%d (%s)", s.line, s.kind) }

// snippetKinds are the markers README.md may use, and how many snippets of each it must
// hold at least, so that a marker removed by an edit is noticed.
var snippetKinds = map[string]int{
	"kube":            3, // YAML sent to a kube-apiserver as a strict server-side dry-run
	"cosign":          3, // shell whose cosign commands must exist in the cosign CLI
	"promoter-config": 1, // a promoter config file, loaded as `promoter serve` loads it
	"chart-values":    2, // values for charts/promoter, rendered with helm
}

// TestPolicyDocs holds README.md's signing and verification instructions to the tools
// they name: the Kyverno and policy-controller policies pass a Strict server-side dry-run
// against those projects' real CRDs on a real kube-apiserver, every cosign command uses
// subcommands and flags the cosign CLI has, the promoter configuration loads and the chart
// values render into a configuration that loads. It does not run the admission
// controllers; TestPolicyDocsAdmitPromoterSignatures runs policy-controller's policies.
func TestPolicyDocs(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	snippets, fenced, err := parseDocSnippets(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string][]docSnippet{}
	for _, s := range snippets {
		byKind[s.kind] = append(byKind[s.kind], s)
	}
	for kind, least := range snippetKinds {
		if n := len(byKind[kind]); n < least {
			t.Errorf("README.md has %d snippets marked <!-- checked: %s -->, want at least %d", n, kind, least)
		}
	}
	// A policy that is not marked would silently go unchecked.
	for _, b := range fenced {
		if policyAPI.MatchString(b.text) && b.kind != "kube" {
			t.Errorf("README.md:%d holds a Kyverno or policy-controller resource but is not marked <!-- checked: kube -->", b.line)
		}
	}

	t.Run("cosign commands exist", func(t *testing.T) {
		checkCosignCommands(t, testenv.Tool(t, "cosign"), cosignCommands(string(readme), fenced))
	})
	t.Run("promoter config loads", func(t *testing.T) {
		for _, s := range byKind["promoter-config"] {
			if _, err := loadDocConfig(t, s.text); err != nil {
				t.Errorf("%s: the daemon would refuse it: %v\n%s", s, err, s.text)
			}
		}
	})
	t.Run("chart values render", func(t *testing.T) {
		helm := testenv.Tool(t, "helm")
		for _, s := range byKind["chart-values"] {
			checkChartValues(t, helm, s)
		}
	})
	t.Run("policies pass a strict dry-run against the CRDs", func(t *testing.T) {
		dirs := downloadModules(t, kyvernoModule, policyControllerModule)
		kube := testenv.StartKube(t)
		checkPolicies(t, kube.Config, dirs, byKind["kube"])
	})
}

// policyAPI matches the apiVersion of a Kyverno or policy-controller resource.
var policyAPI = regexp.MustCompile(`(?m)^apiVersion:\s*(kyverno\.io|policies\.kyverno\.io|policy\.sigstore\.dev)/`)

var checkedMarker = regexp.MustCompile(`^<!-- checked: ([a-z-]+) -->$`)

// parseDocSnippets returns the marked snippets of a markdown document, and every fenced
// block with its marker's kind ("" when unmarked). A marker must be followed by a fence.
func parseDocSnippets(doc string) (marked, fenced []docSnippet, err error) {
	lines := strings.Split(doc, "\n")
	pending := ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if m := checkedMarker.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			if _, ok := snippetKinds[m[1]]; !ok {
				return nil, nil, fmt.Errorf("README.md:%d: unknown snippet kind %q", i+1, m[1])
			}
			pending = m[1]
			continue
		}
		if !strings.HasPrefix(line, "```") {
			if pending != "" && strings.TrimSpace(line) != "" {
				return nil, nil, fmt.Errorf("README.md:%d: <!-- checked: %s --> is not followed by a code fence", i+1, pending)
			}
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			return nil, nil, fmt.Errorf("README.md:%d: code fence never closed", start+1)
		}
		s := docSnippet{kind: pending, line: start + 1, text: strings.Join(body, "\n") + "\n"}
		fenced = append(fenced, s)
		if pending != "" {
			marked = append(marked, s)
		}
		pending = ""
	}
	return marked, fenced, nil
}

// cosignCommand is one cosign invocation found in the README.
type cosignCommand struct {
	where string
	words []string // subcommand candidates: the leading lower-case words
	flags []string // as written, without the value: --key, -y
}

var (
	inlineCosign = regexp.MustCompile("`(cosign [^`]+)`")
	cosignCall   = regexp.MustCompile(`(?:^|[\s;|&(])cosign\s+(.*)$`)
	subcommand   = regexp.MustCompile(`^[a-z][a-z-]*$`)
)

// cosignCommands finds every cosign invocation of the document: in each fenced block
// (comments dropped, continued lines joined) and in inline code spans.
func cosignCommands(doc string, fenced []docSnippet) []cosignCommand {
	var cmds []cosignCommand
	for _, b := range fenced {
		text := strings.ReplaceAll(b.text, "\\\n", " ")
		for n, line := range strings.Split(text, "\n") {
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if m := cosignCall.FindStringSubmatch(line); m != nil {
				cmds = append(cmds, parseCosignCommand(fmt.Sprintf("README.md:%d+%d", b.line, n+1), m[1]))
			}
		}
	}
	for _, m := range inlineCosign.FindAllStringSubmatchIndex(doc, -1) {
		line := 1 + strings.Count(doc[:m[0]], "\n")
		cmds = append(cmds, parseCosignCommand(fmt.Sprintf("README.md:%d", line), strings.TrimPrefix(doc[m[2]:m[3]], "cosign ")))
	}
	return cmds
}

func parseCosignCommand(where, args string) cosignCommand {
	c := cosignCommand{where: where}
	leading := true
	for _, tok := range strings.Fields(args) {
		switch {
		case strings.HasPrefix(tok, "-") && len(tok) > 1:
			leading = false
			name, _, _ := strings.Cut(tok, "=")
			c.flags = append(c.flags, name)
		case leading && subcommand.MatchString(tok):
			c.words = append(c.words, tok)
		default:
			leading = false
		}
	}
	return c
}

// checkCosignCommands runs `cosign SUBCOMMAND --help` for each command and checks that
// cosign knows the subcommand and every flag given.
func checkCosignCommands(t *testing.T, cosign string, cmds []cosignCommand) {
	type help struct {
		path []string
		text string
		err  error
	}
	helps := map[string]help{}
	helpOf := func(words []string) help {
		key := strings.Join(words, " ")
		if h, ok := helps[key]; ok {
			return h
		}
		out, err := testenv.Cosign(t, cosign, append(slices.Clone(words), "--help")...).CombinedOutput()
		h := help{text: string(out), err: err}
		if err == nil {
			h.path, h.err = cosignUsagePath(h.text)
		}
		helps[key] = h
		return h
	}
	// Control: a flag cosign does not have is noticed.
	if h := helpOf([]string{"verify"}); h.err != nil || !cosignHasFlag(h.text, "--key") || cosignHasFlag(h.text, "--no-such-flag") {
		t.Fatalf("cosign verify --help does not list --key, or lists --no-such-flag (err %v):\n%s", h.err, docTail(h.text, 5))
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		if len(c.words) == 0 {
			t.Errorf("%s: cosign without a subcommand", c.where)
			continue
		}
		h := helpOf(c.words)
		if h.err != nil {
			t.Errorf("%s: cosign %s: %v\n%s", c.where, strings.Join(c.words, " "), h.err, docTail(h.text, 5))
			continue
		}
		if len(h.path) == 0 || !slices.Equal(h.path, c.words[:min(len(h.path), len(c.words))]) {
			t.Errorf("%s: cosign %s is not a cosign subcommand (its help is cosign %s's)", c.where, strings.Join(c.words, " "), strings.Join(h.path, " "))
			continue
		}
		for _, f := range c.flags {
			if !cosignHasFlag(h.text, f) {
				t.Errorf("%s: cosign %s has no flag %s", c.where, strings.Join(h.path, " "), f)
			}
		}
		seen[strings.Join(h.path, " ")] = true
	}
	// The commands this page must keep: verifying with a key and keyless, and the trusted root.
	for _, want := range []string{"verify", "trusted-root create"} {
		if !seen[want] {
			t.Errorf("README.md runs no `cosign %s`", want)
		}
	}
	t.Logf("%d cosign commands checked against cosign's help: %v", len(cmds), slices.Sorted(maps.Keys(seen)))
}

// cosignUsagePath is the command path of a cosign help text: the words after "cosign" on
// the line after "Usage:" ("cosign trusted-root create [flags]" → trusted-root, create).
func cosignUsagePath(help string) ([]string, error) {
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "Usage:" || !sc.Scan() {
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "cosign" {
			break
		}
		var path []string
		for _, f := range fields[1:] {
			if !subcommand.MatchString(f) {
				break
			}
			path = append(path, f)
		}
		return path, nil
	}
	return nil, errors.New("help has no Usage: line")
}

// cosignHasFlag reports whether a cosign help text lists flag: cosign prints its own flags
// as "--max-workers=10:" or "-y, --yes=false:", and the global ones as "--output-file
// string".
func cosignHasFlag(help, flag string) bool {
	if strings.HasPrefix(flag, "--") {
		return strings.Contains(help, flag+"=") || strings.Contains(help, flag+" ")
	}
	return strings.Contains(help, flag+", --")
}

// loadDocConfig loads yaml as `promoter serve --config` does.
func loadDocConfig(t *testing.T, yamlText string) (*config.Config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "promoter.yaml")
	if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(config.Input{File: file})
}

var (
	renderedFileRef = regexp.MustCompile(`file:(/etc/promoter/[^\s"']+)`)
	renderedEnvRef  = regexp.MustCompile(`env:([A-Z_][A-Z0-9_]*)`)
)

// checkChartValues renders charts/promoter with the snippet as its values, then loads the
// configuration the chart renders (with its Secret files present) and checks that it signs
// keyless with the snippet's Fulcio and timestamp authority.
func checkChartValues(t *testing.T, helm string, s docSnippet) {
	t.Helper()
	dir := t.TempDir()
	values := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(values, []byte(s.text), 0o600); err != nil {
		t.Fatal(err)
	}
	var want struct {
		Signing struct {
			Keyless struct{ FulcioURL, TSAURL string } `json:"keyless"`
		} `json:"signing"`
	}
	if err := yaml.Unmarshal([]byte(s.text), &want); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	cmd := exec.Command(helm, "template", "promoter", filepath.Join("..", "charts", "promoter"), "--namespace", "promoter", "--values", values)
	cmd.Env = append(os.Environ(), "HOME="+dir, "HELM_CACHE_HOME="+filepath.Join(dir, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "config"), "HELM_DATA_HOME="+filepath.Join(dir, "data"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("%s: helm template: %v\n%s", s, err, stderr.String())
		return
	}
	text, err := renderedConfig(out)
	if err != nil {
		t.Errorf("%s: %v", s, err)
		return
	}
	// The daemon's view: Secret files exist where the chart mounts them.
	root := filepath.Join(dir, "etc")
	for _, m := range renderedFileRef.FindAllStringSubmatch(text, -1) {
		p := filepath.Join(root, strings.TrimPrefix(m[1], "/etc/promoter/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range renderedEnvRef.FindAllStringSubmatch(text, -1) {
		t.Setenv(m[1], "s3cret")
	}
	cfg, err := loadDocConfig(t, strings.ReplaceAll(text, "/etc/promoter/", root+"/"))
	if err != nil {
		t.Errorf("%s: the daemon would refuse the configuration the chart renders: %v\n%s", s, err, text)
		return
	}
	if !cfg.Sign.Keyless() || cfg.Sign.FulcioURL != want.Signing.Keyless.FulcioURL || cfg.Sign.TSAURL != want.Signing.Keyless.TSAURL ||
		cfg.Sign.IdentityToken == "" || cfg.Sign.TrustedRoot == "" {
		t.Errorf("%s: rendered sign %+v, want keyless with Fulcio %s and TSA %s", s, cfg.Sign, want.Signing.Keyless.FulcioURL, want.Signing.Keyless.TSAURL)
	}
}

// renderedConfig is the promoter configuration in a helm render: the config.yaml of the
// ConfigMap that has one.
func renderedConfig(render []byte) (string, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(render), 4096)
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return "", errors.New("the render holds no ConfigMap with config.yaml")
		} else if err != nil {
			return "", fmt.Errorf("decoding the render: %w", err)
		}
		u := unstructured.Unstructured{Object: o}
		if text, found, _ := unstructured.NestedString(o, "data", "config.yaml"); u.GetKind() == "ConfigMap" && found {
			return text, nil
		}
	}
}

// downloadModules fetches module@version zips through the Go module proxy into the module
// cache (offline after the first run) and returns each module's directory.
func downloadModules(t *testing.T, modules ...string) map[string]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Require(t, "the go command, to fetch %v from the module proxy: %v", modules, err)
	}
	// Outside any module, so the repository's go.mod and go.sum are left alone.
	cmd := exec.Command(goBin, append([]string{"mod", "download", "-json"}, modules...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		testenv.Require(t, "go mod download %s: %v\n%s%s", strings.Join(modules, " "), err, out, stderr.String())
	}
	dirs := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go mod download -json: %v\n%s", err, out)
		}
		if m.Error != "" || m.Dir == "" {
			testenv.Require(t, "go mod download %s@%s: %s", m.Path, m.Version, m.Error)
		}
		dirs[m.Path+"@"+m.Version] = m.Dir
	}
	for _, mod := range modules {
		if dirs[mod] == "" {
			t.Fatalf("go mod download did not report %s", mod)
		}
	}
	return dirs
}

// checkPolicies installs the admission controllers' CRDs on the apiserver and sends every
// document of the snippets as a Strict server-side dry-run: an unknown or mistyped field,
// a missing required one, or a kind or version the CRDs do not serve, fails.
func checkPolicies(t *testing.T, cfg *rest.Config, moduleDirs map[string]string, snippets []docSnippet) {
	ctx := t.Context()
	cfg = rest.CopyConfig(cfg)
	warnings := &docWarnings{}
	cfg.WarningHandler = warnings
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var served []schema.GroupVersionKind
	for mod, files := range policyCRDs {
		for _, f := range files {
			for _, crd := range decodeDocs(t, filepath.Join(moduleDirs[mod], f)) {
				// policy-controller converts ClusterImagePolicy versions with its own webhook,
				// which does not run here; its v1alpha1 and v1beta1 schemas hold the same
				// fields, so the apiserver may convert by renaming.
				if _, found, _ := unstructured.NestedMap(crd.Object, "spec", "conversion", "webhook"); found {
					if err := unstructured.SetNestedMap(crd.Object, map[string]any{"strategy": "None"}, "spec", "conversion"); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
					t.Fatalf("creating CRD %s from %s/%s: %v", crd.GetName(), mod, f, err)
				}
				served = append(served, crdKinds(crd)...)
			}
		}
	}
	waitServed(t, ctx, mapper, served)

	var n int
	for _, s := range snippets {
		docs := decodeDocsFrom(t, s.String(), []byte(s.text))
		if len(docs) == 0 {
			t.Errorf("%s holds no Kubernetes object", s)
		}
		for _, o := range docs {
			n++
			gvk := o.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Errorf("%s: %s %s: no API serves it: %v", s, gvk, o.GetName(), err)
				continue
			}
			dryRun := func(o *unstructured.Unstructured) error {
				_, err := dyn.Resource(m.Resource).Create(ctx, o, metav1.CreateOptions{
					DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict,
				})
				return err
			}
			warnings.reset()
			if err := dryRun(o); err != nil {
				t.Errorf("%s: %s %s: %v", s, gvk.Kind, o.GetName(), err)
				continue
			}
			t.Logf("%s: %s %s %s accepted%s", s, gvk.GroupVersion(), gvk.Kind, o.GetName(), warnings.String())
			// Control: the schema is strict down to the snippet's deepest object, so the
			// acceptance above checked every field name.
			bad := o.DeepCopy()
			path := misspell(bad.Object, "spec")
			if err := dryRun(bad); err == nil || !strings.Contains(err.Error(), "unknown field") || !strings.Contains(err.Error(), "notAField") {
				t.Errorf("%s: %s %s with a field %s.notAField: got %v, want an unknown-field error", s, gvk.Kind, o.GetName(), path, err)
			}
		}
	}
	if n == 0 {
		t.Error("no policy was checked")
	}
}

// misspell adds the field notAField to the deepest object under key of obj (through
// lists, at their first item) and returns that object's path.
func misspell(obj map[string]any, key string) string {
	var deepest map[string]any
	var deepestPath string
	depth := -1
	var walk func(v any, path string, d int)
	walk = func(v any, path string, d int) {
		switch v := v.(type) {
		case map[string]any:
			if d > depth {
				deepest, deepestPath, depth = v, path, d
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k], path+"."+k, d+1)
			}
		case []any:
			if len(v) > 0 {
				walk(v[0], path+"[0]", d+1)
			}
		}
	}
	walk(obj[key], key, 0)
	if deepest != nil {
		deepest["notAField"] = true
	}
	return deepestPath
}

// crdKinds are the kinds a CRD serves, one per served version.
func crdKinds(crd *unstructured.Unstructured) []schema.GroupVersionKind {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var gvks []schema.GroupVersionKind
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		if servedFlag, _ := vm["served"].(bool); servedFlag {
			gvks = append(gvks, schema.GroupVersionKind{Group: group, Version: name, Kind: kind})
		}
	}
	return gvks
}

// waitServed waits until discovery serves every gvk (a new CRD takes a moment to be
// established).
func waitServed(t *testing.T, ctx context.Context, mapper *restmapper.DeferredDiscoveryRESTMapper, gvks []schema.GroupVersionKind) {
	t.Helper()
	for _, gvk := range gvks {
		err := testenv.WaitFor(30*time.Second, func() error {
			if ctx.Err() != nil {
				t.Fatalf("%s is not served after its CRD was created: %v", gvk, ctx.Err())
			}
			if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				mapper.Reset()
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s is not served after its CRD was created: %v", gvk, err)
		}
	}
}

func decodeDocs(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeDocsFrom(t, path, b)
}

// decodeDocsFrom decodes every YAML document of b that holds an object.
func decodeDocsFrom(t *testing.T, where string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if len(o) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: o})
		}
	}
}

// docWarnings records the apiserver's Warning headers (deprecations, for one).
type docWarnings struct {
	mu sync.Mutex
	ws []string
}

func (w *docWarnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ws = append(w.ws, text)
}

func (w *docWarnings) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ws = nil
}

func (w *docWarnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ws) == 0 {
		return ""
	}
	return " (warnings: " + strings.Join(w.ws, "; ") + ")"
}

// docTail is the last n lines of s.
func docTail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
