package config

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/types"
)

// keylessKeys are the keys of keyless signing, all of which it needs.
const keylessKeys = "sign.fulcioURL, sign.identityToken, sign.tsaURL and sign.trustedRoot"

// validateIdentities checks keys.identities: keyless signers by types.TrustedSigner's
// rules, each problem at its path, checked against sign.trustedRoot.
func (c *Config) validateIdentities(ps *problems) {
	for i, id := range c.Keys.Identities {
		at := fmt.Sprintf("keys.identities[%d]", i)
		s := types.TrustedSigner{Issuer: id.Issuer, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp}
		var perr *types.PolicyError
		if err := s.Validate(); errors.As(err, &perr) {
			for _, p := range perr.Problems {
				path := at
				if p.Field != "" {
					path += "." + p.Field
				}
				ps.add(path, "%s", p.Msg)
			}
		}
	}
	if len(c.Keys.Identities) > 0 && c.Sign.TrustedRoot == "" {
		ps.add("sign.trustedRoot", "must be set: keys.identities are checked against a sigstore trusted_root.json naming their Fulcio and timestamp authority")
	}
}

// validateSign checks sign.*: the format; keyless signing, which needs all its keys,
// excludes keys.cosign and writes bundles only; and witnesses (a TSA, a log), which
// need a trusted root and bundles. The files are read when the daemon starts.
func (c *Config) validateSign(ps *problems) {
	format, err := sign.ParseFormat(c.Sign.Format)
	if err != nil {
		ps.add("sign.format", "%v", err)
	}
	s := c.Sign
	checkSignURLs(ps, s)
	switch {
	case s.Keyless():
		c.validateKeyless(ps)
		if err == nil && format != sign.FormatBundle {
			ps.add("sign.format", "%s cannot hold keyless signatures (cosign reads them from sigstore bundles): use bundle, the default", format)
		}
	case s.Witnessed():
		if s.TrustedRoot == "" {
			ps.add("sign.trustedRoot", "must be set: sign.tsaURL and sign.rekorURL are checked against a sigstore trusted_root.json listing them (cosign trusted-root create), before a signature is pushed")
		}
		if err == nil && format != sign.FormatBundle {
			ps.add("sign.format", "%s cannot carry timestamps or log entries (sign.tsaURL, sign.rekorURL): use bundle, the default", format)
		}
	}
}

// checkSignURLs checks the spelling of the URLs of sign.*; nothing is contacted.
func checkSignURLs(ps *problems, s Sign) {
	if s.FulcioURL != "" && !isHTTPURL(s.FulcioURL) {
		ps.add("sign.fulcioURL", "%q is not an http(s) URL, e.g. https://fulcio.example", s.FulcioURL)
	}
	if s.TSAURL != "" {
		if _, err := sign.TimestampURL(s.TSAURL); err != nil {
			ps.add("sign.tsaURL", "%v", err)
		}
	}
	if s.RekorURL != "" && !isHTTPURL(s.RekorURL) {
		ps.add("sign.rekorURL", "%q is not an http(s) URL, e.g. https://log2025-1.rekor.sigstore.dev", s.RekorURL)
	}
}

// isHTTPURL reports whether s is an absolute http(s) URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// validateKeyless checks that keyless signing has all its keys and no key of its own.
func (c *Config) validateKeyless(ps *problems) {
	s := c.Sign
	for _, k := range []struct{ key, v string }{
		{"sign.fulcioURL", s.FulcioURL}, {"sign.identityToken", s.IdentityToken},
		{"sign.tsaURL", s.TSAURL}, {"sign.trustedRoot", s.TrustedRoot},
	} {
		if k.v == "" {
			ps.add(k.key, "must be set: keyless signing needs %s", keylessKeys)
		}
	}
	if c.Keys.Cosign != "" {
		ps.add("keys.cosign", "is set and so is keyless signing (%s): sign with one, remove the other", keylessKeys)
	}
}
