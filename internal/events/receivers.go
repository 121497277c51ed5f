package events

import "net/http"

// Auth is how a receiver authenticates a request.
type Auth string

// The ways receivers authenticate, each with the secret named by Endpoint.SecretKey.
const (
	// AuthBearer is "Authorization: Bearer <token>" (bearer.Check).
	AuthBearer Auth = "bearer"
	// AuthToken is what registries can send: Bearer <token>, the bare token as the whole
	// Authorization header, or Basic credentials whose password is the token.
	AuthToken Auth = "token"
	// AuthURLToken is the endpoint URL's ?token=, for a sender that can set no header.
	AuthURLToken Auth = "url-token"
	// AuthHMAC is GitHub's X-Hub-Signature-256: the body's HMAC-SHA256 with the secret.
	AuthHMAC Auth = "hmac-sha256"
	// AuthHeaderToken is GitLab's X-Gitlab-Token header.
	AuthHeaderToken Auth = "x-gitlab-token"
)

// Endpoint is one webhook receiver: where it is served, how it authenticates, which
// configuration key holds its secret, and what decodes its requests. Receivers lists them
// all; the HTTP mux (Register), the configuration's validation, the daemon's wiring and
// the Helm chart's test read that one table.
type Endpoint struct {
	// Name names the receiver: its requests' metrics label (source), and its secret's key
	// in Secrets.
	Name string
	// Path is where it takes POST requests.
	Path string
	// Registry is true for a registry's notifications of pushed images, false for a source
	// push webhook.
	Registry bool
	// Auth is how it authenticates a request.
	Auth Auth
	// SecretKey is the configuration key of its secret (a config.Secret reference); while
	// that is unset the receiver is disabled.
	SecretKey string
	// validation names the senders of an OPTIONS webhook validation handshake the
	// endpoint answers (webhookValidation); "" answers none.
	validation string
	// decode authenticates and decodes a registry receiver's request; serve handles a
	// source receiver's. One of them is set.
	decode func(*Receiver, http.ResponseWriter, *http.Request) ([]registryOutcome, error)
	serve  func(*Receiver, http.ResponseWriter, *http.Request)
}

// Receivers are the webhook receivers. A new one is a row here and its decoder; the
// configuration key its secret is read from is a field of config.Auth, and the chart's
// webhooks.<key>Key (charts/chart_test.go checks every row is wired).
var Receivers = []Endpoint{
	{Name: "registry", Path: "/v1/events/registry", Registry: true, Auth: AuthBearer, SecretKey: "auth.registryToken",
		decode: (*Receiver).decodeRegistry},
	{Name: "harbor", Path: "/v1/events/registry/harbor", Registry: true, Auth: AuthToken, SecretKey: "auth.harbor.token",
		decode: (*Receiver).decodeHarbor},
	{Name: "cloudevents", Path: "/v1/events/registry/cloudevents", Registry: true, Auth: AuthToken, SecretKey: "auth.cloudevents.token",
		decode: (*Receiver).decodeCloudEvents, validation: "CloudEvents"},
	{Name: "acr", Path: "/v1/events/registry/acr", Registry: true, Auth: AuthToken, SecretKey: "auth.acr.token",
		decode: (*Receiver).decodeACR, validation: "Azure Container Registry events"},
	{Name: "gar", Path: "/v1/events/registry/gar", Registry: true, Auth: AuthURLToken, SecretKey: "auth.gar.token",
		decode: (*Receiver).decodeGAR},
	{Name: "ecr", Path: "/v1/events/registry/ecr", Registry: true, Auth: AuthToken, SecretKey: "auth.ecr.token",
		decode: (*Receiver).decodeECR},
	{Name: "quay", Path: "/v1/events/registry/quay", Registry: true, Auth: AuthURLToken, SecretKey: "auth.quay.token",
		decode: (*Receiver).decodeQuay},
	{Name: "github", Path: "/v1/events/source/github", Auth: AuthHMAC, SecretKey: "auth.github.secret",
		serve: (*Receiver).github},
	{Name: "gitlab", Path: "/v1/events/source/gitlab", Auth: AuthHeaderToken, SecretKey: "auth.gitlab.token",
		serve: (*Receiver).gitlab},
	{Name: "generic", Path: "/v1/events/source/generic", Auth: AuthBearer, SecretKey: "auth.generic.token",
		serve: (*Receiver).generic},
}

// handler is e's POST handler on r.
func (e Endpoint) handler(r *Receiver) http.HandlerFunc {
	if e.decode != nil {
		return r.registryReceiver(e.Name, func(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
			return e.decode(r, w, req)
		})
	}
	return func(w http.ResponseWriter, req *http.Request) { e.serve(r, w, req) }
}
