package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// targetLabels are the labels Prometheus adds to every series when it scrapes a pod
// through a ServiceMonitor; the daemon does not export them, and expressions may match on
// them.
var targetLabels = []string{"namespace", "pod", "job", "instance", "service", "container", "endpoint"}

// wantAlerts are the chart's alerts; each must be rendered, so none is checked vacuously.
var wantAlerts = []string{
	"PromoterRevisionStuck", "PromoterPromotionFailures", "PromoterImmutabilityViolation",
	"PromoterBuildsFailing", "PromoterReceiverErrors", "PromoterJetStreamUnavailable",
}

// TestMonitoringNamesOnlyExportedMetrics renders the chart's Grafana dashboard and
// PrometheusRule, validates the rules with the Prometheus rule parser (rulefmt: group and
// rule structure, PromQL, annotation templates) and parses every dashboard query with the
// PromQL parser, then runs a revision through build, merge, sign and promote on a daemon
// and checks that every metric each expression selects is in the daemon's /metrics, with
// every label its matchers name.
func TestMonitoringNamesOnlyExportedMetrics(t *testing.T) {
	objs := renderChart(t, "prometheusRule.enabled=true", "grafanaDashboard.enabled=true")
	p := parser.NewParser(parser.Options{})

	var exprs []namedExpr
	var alerts []string
	for _, o := range objs {
		switch o.kind {
		case "PrometheusRule":
			groups := ruleGroups(t, p, o.doc)
			for _, g := range groups.Groups {
				for _, r := range g.Rules {
					alerts = append(alerts, r.Alert)
					exprs = append(exprs, namedExpr{where: "alert " + r.Alert, expr: r.Expr})
				}
			}
		case "ConfigMap":
			var cm struct {
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal(o.doc, &cm); err != nil {
				t.Fatal(err)
			}
			if js, ok := cm.Data["promoter.json"]; ok {
				exprs = append(exprs, dashboardExprs(t, []byte(js))...)
			}
		}
	}
	if diff := diffSets(wantAlerts, alerts); diff != "" {
		t.Fatalf("rendered alerts differ from the chart's six: %s", diff)
	}
	if n := len(exprs) - len(alerts); n < 20 {
		t.Fatalf("found %d dashboard queries, want the dashboard's 20 or more (did the ConfigMap render?)", n)
	}

	families := scrapeAfterARevision(t)
	var checked int
	for _, e := range exprs {
		node, err := p.ParseExpr(e.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", e.where, e.expr, err)
			continue
		}
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			checked++
			name := vs.Name
			labels, exported := families[name]
			if !exported {
				t.Errorf("%s: selects %s, which the daemon does not export (%s)", e.where, name, e.expr)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel || slices.Contains(targetLabels, m.Name) {
					continue
				}
				if !labels[m.Name] {
					t.Errorf("%s: matches label %q of %s, which has only %v", e.where, m.Name, name, keys(labels))
				}
			}
			return nil
		})
	}
	t.Logf("%d alerts and %d dashboard queries: %d selectors checked against %d exported series names",
		len(alerts), len(exprs)-len(alerts), checked, len(families))
}

type namedExpr struct{ where, expr string }

type renderedObject struct {
	kind string
	doc  []byte
}

// renderChart runs helm template on charts/promoter with the given --set values.
func renderChart(t *testing.T, set ...string) []renderedObject {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"template", "promoter", filepath.Join("..", "charts", "promoter"), "--namespace", "promoter", "--kube-version", "v1.37.2"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, testenv.Tool(t, "helm"), args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "XDG_CACHE_HOME=" + home, "XDG_CONFIG_HOME=" + home, "XDG_DATA_HOME=" + home}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var objs []renderedObject
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("reading rendered YAML: %v", err)
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if head.Kind != "" {
			objs = append(objs, renderedObject{kind: head.Kind, doc: doc})
		}
	}
}

// ruleGroups hands the PrometheusRule's spec (a Prometheus rule file's groups) to the
// Prometheus rule parser, which validates the groups, each rule's fields, its PromQL and
// its label and annotation templates.
func ruleGroups(t *testing.T, p parser.Parser, doc []byte) *rulefmt.RuleGroups {
	t.Helper()
	var rule struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &rule); err != nil {
		t.Fatal(err)
	}
	file, err := yaml.JSONToYAML(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(file, false, model.UTF8Validation, p)
	if len(errs) > 0 {
		t.Fatalf("the Prometheus rule parser refuses the PrometheusRule: %v\n%s", errors.Join(errs...), file)
	}
	return groups
}

// grafanaVars are what Grafana substitutes into a query before sending it to Prometheus.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "6h", `"$namespace"`, `".*"`,
)

// dashboardExprs are every query of the dashboard: each panel's targets (rows included)
// and the metric selector of each label_values() variable.
func dashboardExprs(t *testing.T, js []byte) []namedExpr {
	t.Helper()
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(js, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var out []namedExpr
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s has no expression", p.Title, tg.RefID)
					continue
				}
				out = append(out, namedExpr{where: fmt.Sprintf("panel %q/%s", p.Title, tg.RefID), expr: grafanaVars.Replace(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(map[string]any)
		if !ok {
			t.Fatalf("variable %s: query %v is not an object", v.Name, v.Query)
		}
		s, _ := q["query"].(string)
		inner, ok := strings.CutPrefix(s, "label_values(")
		sel, _, found := strings.Cut(inner, ",")
		if !ok || !found {
			t.Fatalf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, s)
		}
		out = append(out, namedExpr{where: "variable " + v.Name, expr: strings.TrimSpace(sel)})
	}
	return out
}

// scrapeAfterARevision runs one revision through a daemon (GitHub push, local build,
// merge, sign, promote), so the labelled series exist, and returns the series names of its
// /metrics with the labels each has: a histogram as its _bucket (with le), _sum and _count.
func scrapeAfterARevision(t *testing.T) map[string]map[string]bool {
	t.Helper()
	const rev = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
	stagingPort := testenv.FreePort(t)
	staging := fmt.Sprintf("127.0.0.1:%d/acme/app", stagingPort)
	dest := testenv.StartRegistry(t).Host + "/acme/app"
	dir := t.TempDir()
	keyPath, _ := writeKeyPair(t, dir, "pw")
	src := buildContext(t, dir)
	repo := "https://git.example/acme/app"
	d := startDaemon(t, newDaemonConfig(t, withGitHubSecret(githubSecret), withSigningKey(keyPath, "pw"), withReconcile("1h"),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: repo, Branch: "main"}, Platforms: []string{"linux/amd64"},
			Build: &buildConfig{Executor: "local", Dir: src}, Staging: staging,
			Sign: true, Promote: signedTo(dest),
		})))
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))

	githubPush(t, d.URL, repo, "monitoring-1", rev)
	if r := d.waitPhase(t, "app", rev, 3*time.Minute, types.PhasePromoted); !r.Signed {
		t.Fatalf("revision promoted unsigned: %+v", r)
	}

	resp, err := http.Get(d.MetricsURL + "/metrics")
	if err != nil {
		t.Fatalf("scraping the daemon: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the daemon's /metrics is not the text format: %v", err)
	}
	names := map[string]map[string]bool{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if names[name] == nil {
			names[name] = map[string]bool{}
		}
		for _, l := range labels {
			names[name][l.GetName()] = true
		}
		for _, e := range extra {
			names[name][e] = true
		}
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			case dto.MetricType_SUMMARY:
				add(name, m.GetLabel(), "quantile")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			default:
				add(name, m.GetLabel())
			}
		}
	}
	return names
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diffSets says what got lacks of want and has beyond it, or "" when they are equal.
func diffSets(want, got []string) string {
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("missing %v, unexpected %v", missing, extra)
}
