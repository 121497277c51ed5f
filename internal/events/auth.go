package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"github.com/promoter-dev/promoter/internal/bearer"
)

// checkBearer checks "Authorization: Bearer <token>" against want (bearer.Check: the
// scheme in any case, as registries send whatever the endpoint's headers in their
// configuration say, and the token in constant time), naming configKey in a refusal.
func checkBearer(req *http.Request, want, configKey string) error {
	switch err := bearer.Check(req, want); {
	case errors.Is(err, bearer.ErrMissing):
		return reject(http.StatusUnauthorized, "missing Authorization: Bearer token; send the token configured as %s", configKey)
	case errors.Is(err, bearer.ErrScheme):
		return reject(http.StatusUnauthorized, "Authorization header is not a Bearer token; send the token configured as %s", configKey)
	case err != nil:
		return reject(http.StatusUnauthorized, "wrong bearer token; it must equal %s", configKey)
	}
	return nil
}

// checkToken authenticates a registry's notification with a shared token, as registries
// can send one: "Authorization: Bearer <token>", the bare token as the whole header (what
// Harbor sends when its Auth Header is the token alone), or Basic credentials whose
// password is the token (what Zot sends). An unset token disables the endpoint.
func checkToken(req *http.Request, want, configKey, what string) error {
	if want == "" {
		return reject(http.StatusUnauthorized, "%s are disabled: set %s", what, configKey)
	}
	h := strings.TrimSpace(req.Header.Get("Authorization"))
	if h == "" {
		return reject(http.StatusUnauthorized, "missing Authorization header; send the token configured as %s", configKey)
	}
	if _, password, ok := req.BasicAuth(); ok {
		if !bearer.Equal(password, want) {
			return reject(http.StatusUnauthorized, "wrong password in Basic credentials; it must equal %s", configKey)
		}
		return nil
	}
	got := h
	// "Bearer" alone is a bare token that happens to read so, not an empty bearer token.
	if token, ok := bearer.Token(h); ok && strings.Contains(h, " ") {
		got = token
	}
	if !bearer.Equal(got, want) {
		return reject(http.StatusUnauthorized, "wrong token; the Authorization header must be the token configured as %s (or Bearer <token>)", configKey)
	}
	return nil
}

// checkURLToken authenticates a sender that can set no header (a Pub/Sub push
// subscription, a Quay webhook): the token is the "token" query parameter of the endpoint
// URL the sender is configured with, compared in constant time. Any Authorization header
// is ignored: Pub/Sub sends its own OIDC token there when the subscription has one, and
// that is not verified here. An unset token disables the endpoint.
func checkURLToken(req *http.Request, want, configKey, what string) error {
	if want == "" {
		return reject(http.StatusUnauthorized, "%s are disabled: set %s", what, configKey)
	}
	got := req.URL.Query().Get("token")
	if got == "" {
		return reject(http.StatusUnauthorized, "missing ?token= in the endpoint URL; append ?token=<%s> to the URL the sender posts to", configKey)
	}
	if !bearer.Equal(got, want) {
		return reject(http.StatusUnauthorized, "wrong ?token= in the endpoint URL; it must equal %s", configKey)
	}
	return nil
}

// checkGitHubSignature verifies X-Hub-Signature-256 (HMAC-SHA256 of the raw body). The
// SHA-1 X-Hub-Signature header is never accepted.
func checkGitHubSignature(req *http.Request, body []byte, secret string) error {
	h := req.Header.Get("X-Hub-Signature-256")
	if h == "" {
		return reject(http.StatusUnauthorized, "missing X-Hub-Signature-256; set the webhook secret in GitHub to auth.github.secret (SHA-1 signatures are not accepted)")
	}
	sig, ok := strings.CutPrefix(h, "sha256=")
	if !ok {
		return reject(http.StatusUnauthorized, "X-Hub-Signature-256 must start with sha256=")
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return reject(http.StatusUnauthorized, "X-Hub-Signature-256 is not hex")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return reject(http.StatusUnauthorized, "X-Hub-Signature-256 does not match the body signed with auth.github.secret")
	}
	return nil
}
