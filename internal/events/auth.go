package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// checkBearer compares "Authorization: Bearer <token>" with want in constant time.
func checkBearer(req *http.Request, want, configKey string) error {
	h := req.Header.Get("Authorization")
	if h == "" {
		return reject(http.StatusUnauthorized, "missing Authorization: Bearer token; send the token configured as %s", configKey)
	}
	// The scheme is case-insensitive (RFC 9110 §11.1): registries send whatever the
	// endpoint's headers in their configuration say, "bearer" included.
	scheme, got, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return reject(http.StatusUnauthorized, "Authorization header is not a Bearer token; send the token configured as %s", configKey)
	}
	if !equal(strings.TrimSpace(got), want) {
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
		if !equal(password, want) {
			return reject(http.StatusUnauthorized, "wrong password in Basic credentials; it must equal %s", configKey)
		}
		return nil
	}
	got := h
	if scheme, token, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(token)
	}
	if !equal(got, want) {
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
	if !equal(got, want) {
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

// equal compares secrets in constant time. subtle.ConstantTimeCompare returns at once when
// the lengths differ, which tells a caller the secret's length; comparing fixed-size digests
// does not.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
