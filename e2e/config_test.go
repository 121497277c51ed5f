package e2e

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// daemonConfig is a daemon's YAML config as the e2e tests build it: the fields they set,
// each left out when unset so that the daemon's default applies, as it would for an
// operator's file without it. newDaemonConfig renders it; its modifiers (with...) fill it.
type daemonConfig struct {
	// Listen, Metrics and Status are listener addresses; a pointer to "" turns a listener
	// off, nil leaves the address to the daemon (startDaemon picks loopback ports).
	Listen            *string          `json:"listen,omitempty"`
	Metrics           *string          `json:"metrics,omitempty"`
	Status            *string          `json:"status,omitempty"`
	DataDir           string           `json:"dataDir,omitempty"`
	ReconcileInterval string           `json:"reconcileInterval,omitempty"`
	NATS              *natsConfig      `json:"nats,omitempty"`
	Events            *eventsConfig    `json:"events,omitempty"`
	Auth              map[string]any   `json:"auth,omitempty"`
	Keys              *keysConfig      `json:"keys,omitempty"`
	Sign              *signConfig      `json:"sign,omitempty"`
	Builder           *builderConfig   `json:"builder,omitempty"`
	Pipelines         []pipelineConfig `json:"pipelines"`
}

type natsConfig struct {
	URL string `json:"url"`
}

type eventsConfig struct {
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
}

// keysConfig is promoter's cosign key pair (Cosign, Password) and the public keys it
// also publishes.
type keysConfig struct {
	Cosign   string   `json:"cosign,omitempty"`
	Password string   `json:"password,omitempty"`
	Public   []string `json:"public,omitempty"`
}

// signConfig is keyless signing against a sigstore (Fulcio, TSA, maybe Rekor).
type signConfig struct {
	FulcioURL     string `json:"fulcioURL,omitempty"`
	IdentityToken string `json:"identityToken,omitempty"`
	TSAURL        string `json:"tsaURL,omitempty"`
	RekorURL      string `json:"rekorURL,omitempty"`
	TrustedRoot   string `json:"trustedRoot,omitempty"`
}

type builderConfig struct {
	Namespace   string `json:"namespace,omitempty"`
	MaxAttempts int    `json:"maxAttempts,omitempty"`
}

// pipelineConfig is one entry of pipelines:. A pipeline without Source is merge-only.
type pipelineConfig struct {
	Name      string          `json:"name"`
	Source    *sourceConfig   `json:"source,omitempty"`
	Platforms []string        `json:"platforms"`
	Build     *buildConfig    `json:"build,omitempty"`
	Staging   string          `json:"staging"`
	Sign      bool            `json:"sign,omitempty"`
	Verify    *verifyConfig   `json:"verify,omitempty"`
	Promote   []promoteConfig `json:"promote,omitempty"`
}

type sourceConfig struct {
	Repo        string   `json:"repo"`
	Branch      string   `json:"branch,omitempty"`
	Poll        string   `json:"poll,omitempty"`
	ReleaseTags []string `json:"releaseTags,omitempty"`
}

type buildConfig struct {
	Executor   string        `json:"executor,omitempty"`
	Dir        string        `json:"dir,omitempty"`
	Context    string        `json:"context,omitempty"`
	GitSecret  string        `json:"gitSecret,omitempty"`
	Dockerfile string        `json:"dockerfile,omitempty"`
	Args       []string      `json:"args,omitempty"`
	Secrets    []buildSecret `json:"secrets,omitempty"`
}

type buildSecret struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	Key    string `json:"key"`
}

// verifyConfig is a pipeline's verify policy: the signers whose signature lets CI's
// images in, or AcceptUnverified.
type verifyConfig struct {
	Signers          []signerConfig `json:"signers,omitempty"`
	TrustedRoot      string         `json:"trustedRoot,omitempty"`
	AcceptUnverified bool           `json:"acceptUnverified,omitempty"`
}

// signerConfig is a key, or a keyless identity (Issuer and Subject).
type signerConfig struct {
	Key     string `json:"key,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
}

type promoteConfig struct {
	To               string   `json:"to"`
	RequireSignature bool     `json:"requireSignature,omitempty"`
	MutableTags      []string `json:"mutableTags,omitempty"`
}

// configMod changes a daemonConfig.
type configMod func(*daemonConfig)

// newDaemonConfig renders the config every e2e daemon starts from, changed by mods: the
// test registries' bearer token (auth.registryToken) and no pipeline.
func newDaemonConfig(t testing.TB, mods ...configMod) string {
	t.Helper()
	c := daemonConfig{Auth: map[string]any{"registryToken": registryToken}}
	for _, m := range mods {
		m(&c)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("rendering the daemon config: %v", err)
	}
	return string(b)
}

// withPipeline adds pipeline p.
func withPipeline(p pipelineConfig) configMod {
	return func(c *daemonConfig) { c.Pipelines = append(c.Pipelines, p) }
}

// withNATS runs the daemon on the NATS at url instead of an embedded one.
func withNATS(url string) configMod {
	return func(c *daemonConfig) { c.NATS = &natsConfig{URL: url} }
}

// withReconcile sets reconcileInterval (a Go duration, "1h").
func withReconcile(interval string) configMod {
	return func(c *daemonConfig) { c.ReconcileInterval = interval }
}

// withSigningKey signs with the cosign key pair in file, encrypted with password ("": a
// KMS key or an unencrypted one), and publishes public besides.
func withSigningKey(file, password string, public ...string) configMod {
	return func(c *daemonConfig) { c.Keys = &keysConfig{Cosign: file, Password: password, Public: public} }
}

// withKeylessSigning signs keyless against sigstore s.
func withKeylessSigning(s signConfig) configMod {
	return func(c *daemonConfig) { c.Sign = &s }
}

// withAuth sets auth.KEY (registryToken, statusToken) to value, or a webhook sender's
// section (github, generic, harbor, …) to a map such as {"secret": s}.
func withAuth(key string, value any) configMod {
	return func(c *daemonConfig) { c.Auth[key] = value }
}

// withoutRegistryToken drops the base config's auth.registryToken.
func withoutRegistryToken() configMod {
	return func(c *daemonConfig) { delete(c.Auth, "registryToken") }
}

// withGitHubSecret accepts GitHub webhooks signed with secret.
func withGitHubSecret(secret string) configMod {
	return withAuth("github", map[string]any{"secret": secret})
}

// withToken accepts sender's webhooks (generic, harbor, cloudevents, acr, gar, ecr, quay)
// with bearer token.
func withToken(sender, token string) configMod {
	return withAuth(sender, map[string]any{"token": token})
}

// withBuilder runs build Jobs in namespace ("" for the default), giving up after
// maxAttempts (0 for the default).
func withBuilder(namespace string, maxAttempts int) configMod {
	return func(c *daemonConfig) { c.Builder = &builderConfig{Namespace: namespace, MaxAttempts: maxAttempts} }
}

// withListeners sets the daemon's addresses and data directory, as a test that runs the
// promoter binary must; "" turns the metrics or status listener off.
func withListeners(listen, metrics, status, dataDir string) configMod {
	return func(c *daemonConfig) {
		c.Listen, c.Metrics, c.Status, c.DataDir = &listen, &metrics, &status, dataDir
	}
}

// withMaxBodyBytes sets events.maxBodyBytes.
func withMaxBodyBytes(n int64) configMod {
	return func(c *daemonConfig) { c.Events = &eventsConfig{MaxBodyBytes: n} }
}

// bothArches are the platforms of most test pipelines.
var bothArches = []string{"linux/amd64", "linux/arm64"}

// signedTo promotes to each of dests, each requiring promoter's signature.
func signedTo(dests ...string) []promoteConfig {
	var p []promoteConfig
	for _, d := range dests {
		p = append(p, promoteConfig{To: d, RequireSignature: true})
	}
	return p
}

// trusting is the verify policy that accepts images signed with the public keys keys.
func trusting(keys ...string) *verifyConfig {
	v := &verifyConfig{}
	for _, k := range keys {
		v.Signers = append(v.Signers, signerConfig{Key: k})
	}
	return v
}

// acceptUnverified is the verify policy that takes CI's images in unsigned.
func acceptUnverified() *verifyConfig { return &verifyConfig{AcceptUnverified: true} }
