// Package bearer owns the one bearer-token check of promoter's HTTP servers (RFC 6750
// credentials in the Authorization header, RFC 7235): the webhook receivers
// (internal/events) and the status API (internal/status) both call it, so the rule cannot
// drift between them. The scheme is matched case-insensitively, and the token is compared
// as a SHA-256 digest in constant time, which tells a caller neither where a wrong token
// differs nor how long the right one is.
//
// It only compares: it must not answer requests (each server words its own refusal) and
// must not log a token.
package bearer
