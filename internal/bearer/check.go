package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Check reports whether req carries "Authorization: Bearer <want>": nil, or ErrMissing,
// ErrScheme or ErrWrong. The scheme is case-insensitive (RFC 7235 §2.1: "bearer" is as
// good as "Bearer"), and spaces around the token are ignored.
func Check(req *http.Request, want string) error {
	h := req.Header.Get("Authorization")
	if h == "" {
		return ErrMissing
	}
	got, ok := Token(h)
	if !ok {
		return ErrScheme
	}
	if !Equal(got, want) {
		return ErrWrong
	}
	return nil
}

// Token is the token of an Authorization header value of the Bearer scheme (in any case),
// without surrounding spaces; ok is false for another scheme.
func Token(header string) (token string, ok bool) {
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// Equal compares secrets in constant time. subtle.ConstantTimeCompare returns at once when
// the lengths differ, which tells a caller the secret's length; comparing fixed-size
// digests does not.
func Equal(got, want string) bool {
	hg, hw := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(hg[:], hw[:]) == 1
}
