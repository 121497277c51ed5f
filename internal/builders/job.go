package builders

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/types"
)

// defaultJobTemplate is the BuildKit rootless Job; builder.jobTemplate replaces it.
//
//go:embed job.yaml.tmpl
var defaultJobTemplate string

// Labels every build Job and its pods carry. The agent finds its Jobs by them, and the
// values are label-safe renderings (see labelValue), not the raw names.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPipeline  = "promoter.dev/pipeline"
	LabelRevision  = "promoter.dev/revision"
	LabelPlatform  = "promoter.dev/platform"
	LabelAttempt   = "promoter.dev/attempt"
)

// The defaults of JobSettings (the configuration's builder.* keys) and of a pipeline's
// build, in one place.
const (
	// DefaultImage is the pinned BuildKit rootless image of the default build Job.
	DefaultImage = "moby/buildkit:v0.34.2-rootless"
	// DefaultNamespace is where build Jobs are created.
	DefaultNamespace = "promoter-builds"
	// DefaultRegistrySecret is the push credentials Secret mounted into build pods.
	DefaultRegistrySecret = "registry-credentials"
	// DefaultDeadline bounds one build Job; DefaultTTL keeps a finished one for its logs.
	DefaultDeadline = time.Hour
	DefaultTTL      = time.Hour
	// DefaultCacheMode exports every stage's layers to the registry cache, so a
	// multi-stage build reuses its builder stages too.
	DefaultCacheMode = "max"
	// DefaultProvenance attaches a minimal SLSA provenance attestation, as buildx does.
	DefaultProvenance = "mode=min"
)

// JobSettings are the builder agent's settings of the Jobs it creates (the builder.*
// configuration keys of the same names).
type JobSettings struct {
	// Namespace the Jobs are created in.
	Namespace string
	// Image is the BuildKit rootless image of the default template.
	Image string
	// JobTemplate is a file with a Go template of the Job, replacing the default.
	JobTemplate string
	// RegistrySecret is the kubernetes.io/dockerconfigjson Secret mounted for pushing.
	RegistrySecret string
	// BuildKitConfig is a ConfigMap in the Jobs' namespace whose key buildkitd.toml is
	// mounted as ~/.config/buildkit/buildkitd.toml (registry mirrors, plain-HTTP or
	// private-CA registries); "" mounts none.
	BuildKitConfig string
	// Deadline and TTL are the Job's activeDeadlineSeconds and ttlSecondsAfterFinished.
	Deadline, TTL time.Duration
	// HostUsers false runs build pods in a user namespace.
	HostUsers bool
}

// JobData is what a Job template is rendered over.
type JobData struct {
	// Name is the Job name (JobName); Namespace is builder.namespace.
	Name      string
	Namespace string
	Request   types.BuildRequest
	Attempt   int
	// Builder is the agent's Job settings: Image, RegistrySecret, HostUsers, ...
	Builder JobSettings
	// Labels are the Job's labels (LabelPipeline, ...), also meant for its pod template.
	Labels map[string]string
	// GitContext is BuildKit's git build context: "<repo>#<revision>", with ":<dir>"
	// appended when the pipeline's context is a subdirectory.
	GitContext string
	// DeadlineSeconds and TTLSeconds are builder.deadline and builder.ttl in seconds.
	DeadlineSeconds int64
	TTLSeconds      int64
	// GitAuth is how Request.GitSecret authenticates the fetch: "token" (an https URL:
	// its key "token" becomes BuildKit's GIT_AUTH_TOKEN secret), "ssh" (key
	// "ssh-privatekey" becomes buildctl's --ssh default), or "" without a GitSecret.
	GitAuth string
	// GitCredentialsDir and BuildSecretsDir are where the Secrets are mounted (see
	// explain.go, which recognises them in buildctl's errors).
	GitCredentialsDir string
	BuildSecretsDir   string
}

// JobTemplate renders build Jobs from a Go text/template producing YAML.
type JobTemplate struct {
	tmpl    *template.Template
	builder JobSettings
}

// templateFuncs are available to Job templates: quote makes any string a safe YAML
// scalar (a JSON string is a valid YAML double-quoted scalar); label makes it a valid
// label value.
var templateFuncs = template.FuncMap{
	"quote": func(v any) string {
		b, _ := json.Marshal(fmt.Sprint(v))
		return string(b)
	},
	"label": labelValue,
}

// NewJobTemplate parses the template file b.JobTemplate, or the default BuildKit rootless
// template when it is empty, and checks that it renders a valid, unprivileged Job.
func NewJobTemplate(b JobSettings) (*JobTemplate, error) {
	text, name := defaultJobTemplate, "default"
	if b.JobTemplate != "" {
		data, err := os.ReadFile(b.JobTemplate)
		if err != nil {
			return nil, fmt.Errorf("reading builder.jobTemplate: %w", err)
		}
		text, name = string(data), b.JobTemplate
	}
	tmpl, err := template.New(name).Funcs(templateFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing job template %s: %w", name, err)
	}
	t := &JobTemplate{tmpl: tmpl, builder: b}
	probe := types.BuildRequest{
		Pipeline: "probe", Revision: "0123456789abcdef0123456789abcdef01234567",
		Platform: types.MustPlatform("linux/arm/v7"), SourceRepo: "https://git.example/acme/probe.git",
		Context: ".", Dockerfile: "Dockerfile", Image: "registry.example/acme/probe:0123456-arm",
		GitSecret: "probe-git", Args: []string{"PROBE=1"},
		Secrets:    []types.BuildSecret{{ID: "probe", Secret: "probe-secret", Key: "token"}},
		Cache:      &types.BuildCache{Ref: "registry.example/acme/probe:buildcache-linux-armv7", Mode: "max"},
		Provenance: "mode=min",
	}
	if _, err := t.Render(probe, 1); err != nil {
		return nil, fmt.Errorf("job template %s does not render a valid Job: %w", name, err)
	}
	return t, nil
}

// Data is what Render passes to the template for one attempt of req.
func (t *JobTemplate) Data(req types.BuildRequest, attempt int) JobData {
	return JobData{
		Name:              JobName(req, attempt),
		Namespace:         t.builder.Namespace,
		Request:           req,
		Attempt:           attempt,
		Builder:           t.builder,
		Labels:            JobLabels(req, attempt),
		GitContext:        GitContext(req),
		DeadlineSeconds:   int64(t.builder.Deadline.Seconds()),
		TTLSeconds:        int64(t.builder.TTL.Seconds()),
		GitAuth:           gitAuth(req),
		GitCredentialsDir: GitCredentialsDir,
		BuildSecretsDir:   BuildSecretsDir,
	}
}

func gitAuth(req types.BuildRequest) string {
	switch {
	case req.GitSecret == "":
		return ""
	case gitUsesSSH(req.SourceRepo):
		return "ssh"
	default:
		return "token"
	}
}

// Render gives the Job of one attempt of req. Whatever the template says, the Job gets
// its deterministic name, the agent's namespace and promoter's labels (the agent finds and
// watches Jobs by them), and it is refused when a container asks to be privileged.
func (t *JobTemplate) Render(req types.BuildRequest, attempt int) (*batchv1.Job, error) {
	data := t.Data(req, attempt)
	var buf bytes.Buffer
	if err := t.tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("%w: rendering job template: %v", bus.ErrPermanent, err)
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(buf.Bytes(), &job); err != nil {
		return nil, fmt.Errorf("%w: job template output is not a batch/v1 Job: %v", bus.ErrPermanent, err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		return nil, fmt.Errorf("%w: job template gives %s %s, want batch/v1 Job", bus.ErrPermanent, job.APIVersion, job.Kind)
	}
	job.Name, job.Namespace = data.Name, data.Namespace
	if job.Labels == nil {
		job.Labels = map[string]string{}
	}
	for k, v := range data.Labels {
		job.Labels[k] = v
	}
	spec := job.Spec.Template.Spec
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("%w: job template gives a Job without containers", bus.ErrPermanent)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			return nil, fmt.Errorf("%w: job template makes container %q privileged; promoter never runs privileged builds", bus.ErrPermanent, c.Name)
		}
	}
	return &job, nil
}

// GitContext is the BuildKit git context of req: "<repo>#<revision>[:<context dir>]".
// BuildKit fetches exactly that commit; the Dockerfile (req.Dockerfile) is read relative to
// the context directory, as docker build does with a git URL.
//
// BuildKit (v0.34 dfgitutil.ParseGitRef) takes an http(s) URL for a git repository only when
// its path ends in ".git"; any other is fetched as a plain HTTP context and the build fails
// confusingly. So https://github.com/acme/web becomes https://github.com/acme/web.git, which
// GitHub, GitLab, Gitea and Bitbucket all serve. git://, ssh:// and scp-style URLs are kept.
func GitContext(req types.BuildRequest) string {
	s := gitRemote(req.SourceRepo) + "#" + req.Revision
	if dir := strings.Trim(path.Clean(req.Context), "/"); dir != "." && dir != "" {
		s += ":" + dir
	}
	return s
}

func gitRemote(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || strings.HasSuffix(u.Path, ".git") {
		return repo
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + ".git"
	return u.String()
}

// JobLabels are the labels of one attempt's Job and pods.
func JobLabels(req types.BuildRequest, attempt int) map[string]string {
	return map[string]string{
		LabelManagedBy: "promoter",
		LabelPipeline:  labelValue(req.Pipeline),
		LabelRevision:  labelValue(req.Revision),
		LabelPlatform:  labelValue(req.Platform.OS + "-" + req.Platform.Architecture + variantSuffix(req.Platform)),
		LabelAttempt:   strconv.Itoa(attempt),
	}
}

func variantSuffix(p types.Platform) string {
	if p.Variant == "" {
		return ""
	}
	return "-" + p.Variant
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// JobName is the deterministic Job name of one attempt of req: readable
// "build-<pipeline>-<revision>-<platform>-<attempt>", cut to fit 63 characters (Job names
// become label values), and always ending in a hash of the full identity so two attempts
// or revisions never share a name even when cut.
func JobName(req types.BuildRequest, attempt int) string {
	id := fmt.Sprintf("%s/%d", req.MsgID(), attempt)
	sum := sha256.Sum256([]byte(id))
	hash := hex.EncodeToString(sum[:])[:8]
	base := fmt.Sprintf("build-%s-%s-%s-%d", req.Pipeline, req.Revision, req.Platform.Token(), attempt)
	base = notDNS.ReplaceAllString(strings.ToLower(strings.ReplaceAll(base, ".", "-")), "-")
	const max = 63 - 1 - 8
	if len(base) > max {
		// Keep the attempt visible: cut the middle (the revision), not the end.
		tail := fmt.Sprintf("-%s-%d", req.Platform.Token(), attempt)
		tail = notDNS.ReplaceAllString(strings.ReplaceAll(tail, ".", "-"), "-")
		if len(tail) < max {
			base = base[:max-len(tail)] + tail
		} else {
			base = base[:max]
		}
	}
	base = strings.Trim(strings.ReplaceAll(base, "--", "-"), "-")
	return base + "-" + hash
}

var notLabel = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// labelValue makes s a valid label value: at most 63 characters of [A-Za-z0-9._-],
// starting and ending with an alphanumeric.
func labelValue(s string) string {
	s = notLabel.ReplaceAllString(s, "_")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "._-")
}
