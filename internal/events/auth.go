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
	got, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return reject(http.StatusUnauthorized, "Authorization header is not a Bearer token")
	}
	if !equal(got, want) {
		return reject(http.StatusUnauthorized, "wrong bearer token; it must equal %s", configKey)
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

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
