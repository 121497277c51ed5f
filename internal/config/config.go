package config

import (
	"time"

	"github.com/promoter-dev/promoter/internal/listen"
	"github.com/promoter-dev/promoter/internal/types"
)

// Config is the daemon's whole configuration. Field names are the YAML keys; nested keys
// are also read from PROMOTER_<KEY>_<SUBKEY> environment variables (for example
// PROMOTER_NATS_URL), except the lists (registries, pipelines), which come from the file.
type Config struct {
	// Listen is the address of the webhook server (/v1/events/..., /healthz, /readyz).
	Listen string `mapstructure:"listen"`
	// Metrics is the address of the Prometheus /metrics server; empty disables it.
	Metrics string `mapstructure:"metrics"`
	// Pprof also serves Go's runtime profiles (net/http/pprof) under /debug/pprof/ on the
	// metrics listener, to find where a daemon's CPU or memory goes. Off by default: a
	// profile shows the code's internals and costs CPU while it runs.
	Pprof bool `mapstructure:"pprof"`
	// Status is the address of the status page (/) and API (/v1/revisions), kept off the
	// webhook listener that forges must reach from outside; empty disables it.
	Status string `mapstructure:"status"`
	// DataDir holds the embedded NATS server's JetStream store.
	DataDir string `mapstructure:"dataDir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"logLevel"`
	// LogFormat is text or json.
	LogFormat string `mapstructure:"logFormat"`
	// ReconcileInterval is how often staging repositories are listed to catch pushes whose
	// notification was lost.
	ReconcileInterval time.Duration `mapstructure:"reconcileInterval"`

	NATS       NATS       `mapstructure:"nats"`
	Server     Server     `mapstructure:"server"`
	Events     Events     `mapstructure:"events"`
	Auth       Auth       `mapstructure:"auth"`
	Keys       Keys       `mapstructure:"keys"`
	Sign       Sign       `mapstructure:"sign"`
	Promote    Promote    `mapstructure:"promote"`
	Builder    Builder    `mapstructure:"builder"`
	Registries []Registry `mapstructure:"registries"`
	Pipelines  []Pipeline `mapstructure:"pipelines"`

	// domain are Pipelines as validation parsed them (DomainPipelines).
	domain []types.Pipeline
}

// NATS configures the bus connection.
type NATS struct {
	// URL of the NATS servers (comma-separated); empty starts an embedded JetStream server
	// storing in DataDir.
	URL string `mapstructure:"url"`
	// Credentials is a NATS .creds file for an external server.
	Credentials string `mapstructure:"credentials"`
	// Replicas of the streams and KV bucket. 0 (the default) chooses: 1 on the embedded
	// server, 3 on an external one (1, with a warning, if that server is not clustered).
	Replicas int `mapstructure:"replicas"`
}

// Server bounds every HTTP listener (listen, status, metrics; the builder agent's metrics).
type Server struct {
	// ReadHeaderTimeout bounds reading a request's line and headers (at most ReadTimeout).
	ReadHeaderTimeout time.Duration `mapstructure:"readHeaderTimeout"`
	// ReadTimeout bounds reading a whole request, body included; a slower body gets 408.
	ReadTimeout time.Duration `mapstructure:"readTimeout"`
	// WriteTimeout bounds handling a request and writing its response.
	WriteTimeout time.Duration `mapstructure:"writeTimeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `mapstructure:"idleTimeout"`
	// MaxHeaderBytes bounds a request's line and headers; larger ones get 431.
	MaxHeaderBytes int `mapstructure:"maxHeaderBytes"`
	// MaxInFlight bounds the requests of one listener worked on at once (body received);
	// past it the answer is 503 with Retry-After.
	MaxInFlight int `mapstructure:"maxInFlight"`
	// MaxConns is the connection budget of all listeners together; 0 is half the
	// open-file limit, at most 1024. Past it the slowest reader is dropped.
	MaxConns int `mapstructure:"maxConns"`
	// MaxConnsPerClient is the share of that budget one client address (an IPv4 address,
	// an IPv6 /64) may hold; 0 is a quarter of the budget, the budget or more turns it off.
	// Past it the address makes room among its own connections or is refused with a 503,
	// never closing another's.
	MaxConnsPerClient int `mapstructure:"maxConnsPerClient"`
}

// Limits are s as the listeners take them, buffering bodies of up to maxBody bytes before
// a request counts as in flight.
func (s Server) Limits(maxBody int64) listen.Limits {
	return listen.Limits{
		ReadHeaderTimeout: s.ReadHeaderTimeout, ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout,
		IdleTimeout: s.IdleTimeout, MaxHeaderBytes: s.MaxHeaderBytes, MaxBodyBytes: maxBody, MaxInFlight: s.MaxInFlight,
		MaxConnsPerClient: s.MaxConnsPerClient,
	}
}

// Events configures the webhook receivers.
type Events struct {
	// MaxBodyBytes is the largest request body accepted; larger ones get 413.
	MaxBodyBytes int64 `mapstructure:"maxBodyBytes"`
}

// Auth holds the webhook secrets. Each is a Secret reference. Each webhook receiver
// (events.Receivers) names the key of its own here, which Auth.Secret finds.
type Auth struct {
	// RegistryToken is the bearer token registries send with notifications.
	RegistryToken Secret `mapstructure:"registryToken"`
	// StatusToken, when set, is the bearer token the status API requires (the status
	// page asks for it and sends it).
	StatusToken Secret `mapstructure:"statusToken"`
	GitHub      struct {
		// Secret is the webhook secret GitHub signs payloads with (X-Hub-Signature-256).
		Secret Secret `mapstructure:"secret"`
	} `mapstructure:"github"`
	GitLab struct {
		// Token is the X-Gitlab-Token GitLab sends.
		Token Secret `mapstructure:"token"`
	} `mapstructure:"gitlab"`
	Generic struct {
		// Token is the bearer token of the generic source webhook.
		Token Secret `mapstructure:"token"`
	} `mapstructure:"generic"`
	Harbor struct {
		// Token is what Harbor's webhook policy sends as its Auth Header.
		Token Secret `mapstructure:"token"`
	} `mapstructure:"harbor"`
	CloudEvents struct {
		// Token authenticates CloudEvents senders (Zot and others): Bearer, or the
		// password of Basic credentials.
		Token Secret `mapstructure:"token"`
	} `mapstructure:"cloudevents"`
	ACR struct {
		// Token is what an Azure Container Registry webhook sends in its custom
		// Authorization header (Bearer <token>).
		Token Secret `mapstructure:"token"`
	} `mapstructure:"acr"`
	GAR struct {
		// Token is the ?token= of the Pub/Sub push endpoint that delivers Artifact
		// Registry's notifications (Pub/Sub can set no header of ours).
		Token Secret `mapstructure:"token"`
	} `mapstructure:"gar"`
	ECR struct {
		// Token is the API key an EventBridge connection sends as its Authorization header
		// (Bearer <token>), or the password of its Basic authorization.
		Token Secret `mapstructure:"token"`
	} `mapstructure:"ecr"`
	Quay struct {
		// Token is the ?token= of Quay's webhook URL (Quay can set no header).
		Token Secret `mapstructure:"token"`
	} `mapstructure:"quay"`
	// InsecureNoAuth accepts registry notifications without a token. Development only.
	InsecureNoAuth bool `mapstructure:"insecureNoAuth"`
}

// Keys names the signing and verification keys.
type Keys struct {
	// Cosign is the private key: a file path (cosign or PEM format) or k8s://namespace/name.
	Cosign string `mapstructure:"cosign"`
	// Password decrypts an encrypted cosign key.
	Password Secret `mapstructure:"password"`
	// Public are the public keys a source must be signed by before promotion (one of them):
	// files, env://NAME or k8s://namespace/name. List the old and the new key while
	// rotating. Empty verifies with the signing key's public half.
	Public []string `mapstructure:"public"`
	// Identities are keyless signers (issuer, with subject or subjectRegexp) whose
	// signatures requireSignature accepts too, checked against sign.trustedRoot: another
	// promoter's, or promoter's own before its service account was renamed.
	Identities []Identity `mapstructure:"identities"`
}

// Identity is a keyless signer: certificates from Issuer for Subject, or for an identity
// SubjectRegexp matches (cosign's --certificate-oidc-issuer, --certificate-identity and
// --certificate-identity-regexp).
type Identity struct {
	Issuer        string `mapstructure:"issuer"`
	Subject       string `mapstructure:"subject"`
	SubjectRegexp string `mapstructure:"subjectRegexp"`
}

// Sign configures how signatures are made and stored. Signing is with keys.cosign, or
// keyless when FulcioURL and IdentityToken are set (never both). Either may be witnessed
// by a timestamp authority (TSAURL, required keyless) and a Rekor v2 log (RekorURL),
// checked against TrustedRoot.
type Sign struct {
	// Format is "bundle" (sigstore bundle as an OCI referrer, what cosign v3 writes) or
	// "legacy" (the sha256-<hex>.sig tag). Keyless and witnessed signatures are bundles.
	Format string `mapstructure:"format"`
	// FulcioURL is the base URL of the Fulcio that issues keyless signing certificates.
	FulcioURL string `mapstructure:"fulcioURL"`
	// IdentityToken is a file holding the OIDC token Fulcio takes (in Kubernetes a
	// projected service-account token with audience sigstore); read for every signature.
	IdentityToken string `mapstructure:"identityToken"`
	// TSAURL is the RFC 3161 timestamp authority every signature is stamped by (keyless
	// signatures always, key signatures when set); a URL without a path gets
	// /api/v1/timestamp.
	TSAURL string `mapstructure:"tsaURL"`
	// RekorURL is a Rekor v2 transparency log every signature is also entered in; ""
	// for none.
	RekorURL string `mapstructure:"rekorURL"`
	// TrustedRoot is a sigstore trusted_root.json naming that Fulcio, TSA and log,
	// against which signatures are verified before they are pushed and when they are
	// checked (the skip-if-signed check, requireSignature).
	TrustedRoot string `mapstructure:"trustedRoot"`
}

// Keyless reports whether keyless signing is configured (a Fulcio URL or an identity
// token): validation then wants all its keys.
func (s Sign) Keyless() bool {
	return s.FulcioURL != "" || s.IdentityToken != ""
}

// Witnessed reports whether a timestamp authority or a log is set.
func (s Sign) Witnessed() bool { return s.TSAURL != "" || s.RekorURL != "" }

// Promote configures copying to destinations.
type Promote struct {
	// Jobs is the number of concurrent requests per registry host.
	Jobs int `mapstructure:"jobs"`
	// Timeout bounds one promotion of one destination, retries included.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Builder configures the builder agent and the Jobs it creates.
type Builder struct {
	// Namespace the agent creates Jobs in.
	Namespace string `mapstructure:"namespace"`
	// Platforms the agent builds (os/arch[/variant]).
	Platforms []string `mapstructure:"platforms"`
	// Image is the BuildKit rootless image of the default Job.
	Image string `mapstructure:"image"`
	// JobTemplate is a file with a Go template of the Job, replacing the default.
	JobTemplate string `mapstructure:"jobTemplate"`
	// RegistrySecret is the Secret of type kubernetes.io/dockerconfigjson mounted into Jobs.
	RegistrySecret string `mapstructure:"registrySecret"`
	// BuildKitConfig is a ConfigMap in the builder namespace whose buildkitd.toml the
	// default Job mounts as buildkitd's configuration; "" for none.
	BuildKitConfig string `mapstructure:"buildkitConfig"`
	// MaxAttempts is how often a failed build is tried before the revision fails.
	MaxAttempts int `mapstructure:"maxAttempts"`
	// Deadline is the Job's activeDeadlineSeconds.
	Deadline time.Duration `mapstructure:"deadline"`
	// TTL is the Job's ttlSecondsAfterFinished.
	TTL time.Duration `mapstructure:"ttl"`
	// HostUsers false runs builds in a user namespace (clusters with user namespaces).
	HostUsers bool `mapstructure:"hostUsers"`
}

// Registry holds per-host options. Credentials come from the docker config and keychains.
type Registry struct {
	Host string `mapstructure:"host"`
	// Insecure allows plain HTTP to this host.
	Insecure bool `mapstructure:"insecure"`
}

// Pipeline is one staging repository whose per-arch images are merged into an index,
// signed and promoted. With source.repo it also builds them, on each push to the branch;
// without it it is merge-only: CI pushes the arch tags, and build settings are refused.
type Pipeline struct {
	Name string `mapstructure:"name"`
	// Source is optional: it is what makes the pipeline build.
	Source    Source   `mapstructure:"source"`
	Platforms []string `mapstructure:"platforms"`
	Build     Build    `mapstructure:"build"`
	// Staging is the repository the builders push arch tags to and the index is merged in.
	Staging string `mapstructure:"staging"`
	// ArchTag is the tag pattern of per-platform images ({revision} {os} {arch} {variant}).
	ArchTag string `mapstructure:"archTag"`
	// Sign signs the merged index and its children.
	Sign bool `mapstructure:"sign"`
	// Verify is whose signature lets an arch image no build of promoter's pushed into a
	// merge. A merge-only pipeline that signs needs signers, or acceptUnverified.
	Verify  Verify        `mapstructure:"verify"`
	Promote []Destination `mapstructure:"promote"`
}

// Verify is a pipeline's trust policy for arch images (types.VerifyPolicy). Key files and
// the trusted root are read by the sign package when the daemon starts, not here.
type Verify struct {
	// Signers are the accepted signers; an image one of them signed is accepted.
	Signers []Signer `mapstructure:"signers"`
	// TrustedRoot is a sigstore trusted_root.json file that keyless signers' certificates
	// are checked against; keyless signers need it, and nothing else reads it.
	TrustedRoot string `mapstructure:"trustedRoot"`
	// Attestations are in-toto attestations an accepted image must also carry, signed by
	// an accepted signer.
	Attestations []Attestation `mapstructure:"attestations"`
	// AcceptUnverified lets a merge-only pipeline sign any image CI pushed to staging,
	// without evidence of who built it: the explicit opt-out, warned about at start.
	AcceptUnverified bool `mapstructure:"acceptUnverified"`
}

// Signer is one accepted signer: Key, or Issuer with Subject or SubjectRegexp.
type Signer struct {
	// Key is a public key: a PEM file, env://NAME or k8s://namespace/name.
	Key string `mapstructure:"key"`
	// Issuer is the OIDC issuer of a keyless signer's certificate
	// (cosign's --certificate-oidc-issuer).
	Issuer string `mapstructure:"issuer"`
	// Subject is the certificate's exact identity (--certificate-identity); SubjectRegexp
	// is a Go regular expression it must match instead (--certificate-identity-regexp).
	Subject       string `mapstructure:"subject"`
	SubjectRegexp string `mapstructure:"subjectRegexp"`
}

// Attestation is an in-toto attestation an accepted image must carry.
type Attestation struct {
	// PredicateType is the statement's predicate type, e.g. https://slsa.dev/provenance/v1.
	PredicateType string `mapstructure:"predicateType"`
	// BuilderID, when set, must equal the SLSA provenance's builder id.
	BuilderID string `mapstructure:"builderID"`
}

// Source is the git repository and branch a pipeline follows.
type Source struct {
	Repo   string `mapstructure:"repo"`
	Branch string `mapstructure:"branch"`
	// Poll is how often the daemon lists the branch head (git ls-remote) and treats a new
	// head as a push webhook; 0 (the default) never polls, else at least
	// sources.MinInterval.
	Poll time.Duration `mapstructure:"poll"`
	// PollToken is an access token the polls of an http(s) Repo send (basic auth
	// x-access-token:<token>); empty: the daemon must be able to read the repository as it
	// is.
	PollToken Secret `mapstructure:"pollToken"`
	// ReleaseTags are glob patterns (path.Match, e.g. "v*") of the repository's git tags
	// that are releases: a pushed tag that matches is promoted, as an immutable tag, to
	// every destination of the revision of the commit it names. Nothing is rebuilt.
	ReleaseTags []string `mapstructure:"releaseTags"`
}

// Build says how a pipeline's platforms are built; only a pipeline with source.repo
// has it, and only then do its defaults apply.
type Build struct {
	// Executor is "kubernetes" (builder agents run Jobs) or "local" (in-process,
	// development): types.Executors, parsed by types.ParseExecutor.
	Executor   string `mapstructure:"executor"`
	Context    string `mapstructure:"context"`
	Dockerfile string `mapstructure:"dockerfile"`
	// Base is the base image of the local executor.
	Base string `mapstructure:"base"`
	// Dir is the source tree of the local executor (a directory on the daemon's machine).
	Dir string `mapstructure:"dir"`
	// GitSecret names the Secret in the builder namespace with the credentials of a
	// private source repository: key "token" for an https URL (BuildKit's GIT_AUTH_TOKEN),
	// key "ssh-privatekey" (a kubernetes.io/ssh-auth Secret) for an ssh URL.
	GitSecret string `mapstructure:"gitSecret"`
	// Args are build arguments, each NAME=value (a list, not a map: configuration keys
	// are case-insensitive, build argument names are not).
	Args []string `mapstructure:"args"`
	// Secrets are build secrets, mounted from Secrets in the builder namespace.
	Secrets []BuildSecret `mapstructure:"secrets"`
	// Cache is the registry build cache.
	Cache BuildCache `mapstructure:"cache"`
	// Provenance is BuildKit's attest:provenance: "mode=min" (the default, as buildx),
	// "mode=max", or "off".
	Provenance string `mapstructure:"provenance"`
}

// BuildSecret is one build secret, read by the Dockerfile with RUN --mount=type=secret,id=ID.
type BuildSecret struct {
	// ID is the secret's id in the Dockerfile.
	ID string `mapstructure:"id"`
	// Secret and Key name the Kubernetes Secret in the builder namespace and its key.
	Secret string `mapstructure:"secret"`
	Key    string `mapstructure:"key"`
}

// BuildCache is a pipeline's registry build cache, one per platform.
type BuildCache struct {
	// Ref is the cache's image reference, with the placeholders {staging} {os} {arch}
	// {variant}; the default is DefaultCacheRef.
	Ref string `mapstructure:"ref"`
	// Mode is "max" (default: every stage's layers), "min" (the result's) or "off".
	Mode string `mapstructure:"mode"`
}

// Destination is one repository a pipeline promotes to.
type Destination struct {
	To               string `mapstructure:"to"`
	RequireSignature bool   `mapstructure:"requireSignature"`
	// MutableTags may be moved to a new revision (for example latest); no other tag is.
	MutableTags []string `mapstructure:"mutableTags"`
}
