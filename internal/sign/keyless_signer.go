package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// Keyless is where a keyless Signer gets what it signs with: a short-lived Fulcio
// certificate bought with an OIDC identity token, and an RFC 3161 timestamp that proves
// the signature was made while the certificate was valid (it lives 10 minutes; without
// the timestamp the signature would prove nothing after that).
type Keyless struct {
	// FulcioURL is the Fulcio instance's base URL (https://fulcio.example); certificates
	// are requested from its /api/v2/signingCert.
	FulcioURL string
	// IdentityToken is a file holding the OIDC identity token: in Kubernetes, a projected
	// service-account token with audience sigstore. It is read again for every signature,
	// since the kubelet rotates it.
	IdentityToken string
	// TSAURL is the timestamp authority's RFC 3161 endpoint; a URL without a path gets
	// sigstore timestamp-authority's /api/v1/timestamp.
	TSAURL string
	// RekorURL is a Rekor v2 log each signature is also entered in; "" for none.
	RekorURL string
	// TrustedRoot is a sigstore trusted_root.json naming the Fulcio CA, the timestamp
	// authority and the log: what was signed is verified against it, before it is pushed
	// and when a signature already stored is checked.
	TrustedRoot string
}

// Identity is the certificate identity Fulcio gives a keyless signer: its OIDC issuer
// and the certificate's subject alternative name, what cosign's --certificate-oidc-issuer
// and --certificate-identity match.
type Identity struct {
	Issuer, Subject string
}

// String names the identity as Evidence.Signer does: "<subject> from <issuer>".
func (id Identity) String() string { return id.Subject + " from " + id.Issuer }

// defaultTimestampPath is sigstore timestamp-authority's RFC 3161 endpoint.
const defaultTimestampPath = "/api/v1/timestamp"

// NewKeylessSigner signs keyless, in FormatBundle only (WithFormat(FormatLegacy) is
// refused: cosign reads keyless signatures from bundles): for each digest it reads the
// identity token, gets a certificate for a fresh key from Fulcio, signs the same in-toto
// statement a key signature holds, gets an RFC 3161 timestamp of the signature,
// verifies the bundle against the trusted root and pushes it. A digest is skipped when a
// bundle already stored for it carries a certificate of this signer's Identity that
// verifies against the trusted root with a timestamp. The token is read once here, to
// learn that identity: a missing or unreadable token, or trusted root, is an error now,
// not at the first signature.
func NewKeylessSigner(k Keyless, reg registry.Client, opts ...Option) (*Signer, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.format != FormatBundle {
		return nil, refuse(ErrBundleOnly, "keyless signing writes sigstore bundles only, not the %s format", o.format)
	}
	m, err := newKeylessMethod(k)
	if err != nil {
		return nil, err
	}
	return &Signer{method: m, format: o.format, reg: reg, log: o.log, metrics: o.metrics}, nil
}

// signer is the identity as a keyless signer of a verify policy: exactly this subject
// from this issuer.
func (id Identity) signer() types.TrustedSigner {
	return types.TrustedSigner{Issuer: id.Issuer, Subject: id.Subject}
}

// Identity is the certificate identity of a keyless Signer; false for a key.
func (s *Signer) Identity() (Identity, bool) {
	if m, ok := s.method.(*keylessMethod); ok {
		return m.id, true
	}
	return Identity{}, false
}

// keylessMethod signs with a Fulcio certificate and a timestamp.
type keylessMethod struct {
	*keylessChecker
	id        Identity // the token's, which the checker accepts
	tokenFile string
	fulcio    *sgsign.Fulcio
	w         *witnesses // the TSA, and a log when one is set
}

func newKeylessMethod(k Keyless) (*keylessMethod, error) {
	for _, f := range []struct{ what, v string }{
		{"a Fulcio URL", k.FulcioURL}, {"an identity token file", k.IdentityToken},
		{"a timestamp authority URL", k.TSAURL}, {"a trusted root", k.TrustedRoot},
	} {
		if f.v == "" {
			return nil, refuse(ErrKeylessConfig, "keyless signing needs %s", f.what)
		}
	}
	// The URLs first: a typo is named before any file is read.
	if _, err := TimestampURL(k.TSAURL); err != nil {
		return nil, err
	}
	if _, err := httpURL(k.FulcioURL); err != nil {
		return nil, fmt.Errorf("fulcio URL: %w", err)
	}
	_, id, err := readIdentityToken(k.IdentityToken)
	if err != nil {
		return nil, err
	}
	kc, err := newKeylessChecker(k.TrustedRoot, id.signer())
	if err != nil {
		return nil, err
	}
	w, err := Witnesses{TSAURL: k.TSAURL, RekorURL: k.RekorURL, TrustedRoot: k.TrustedRoot}.open(kc.kl.tr)
	if err != nil {
		return nil, err
	}
	return &keylessMethod{
		keylessChecker: kc,
		id:             id,
		tokenFile:      k.IdentityToken,
		fulcio:         sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: strings.TrimSuffix(k.FulcioURL, "/"), Retries: 1}),
		w:              w,
	}, nil
}

// write signs d with a certificate for a fresh key, as `cosign sign` keyless writes it in
// the bundle format: the statement writeBundle signs, the certificate as verification
// material and the TSA's timestamp, checked against the trusted root before it is pushed.
func (m *keylessMethod) write(ctx context.Context, reg registry.Client, d name.Digest, f Format) error {
	if f != FormatBundle {
		return refuse(ErrBundleOnly, "signing %s: keyless signatures are written as sigstore bundles only", d)
	}
	// Read now, not at start: the kubelet replaces a projected token before it expires.
	tok, id, err := readIdentityToken(m.tokenFile)
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	if id != m.id {
		// The skip rule and requireSignature look for m.id; signing as another would pile up
		// signatures nobody checks.
		return fmt.Errorf("signing %s: identity token %s now names %s, but the signer started as %s: restart it", d, m.tokenFile, id, m.id)
	}
	payload, err := statementPayload(d, ctypes.CosignSignPredicateType, &structpb.Struct{})
	if err != nil {
		return err
	}
	kp, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		return fmt.Errorf("signing %s: generating a key: %w", d, err)
	}
	opts := sgsign.BundleOptions{
		Context:                    ctx,
		CertificateProvider:        m.fulcio,
		CertificateProviderOptions: &sgsign.CertificateProviderOptions{IDToken: tok},
	}
	// The TSA, the log, and the trusted root sigstore-go verifies the bundle it made
	// against (certificate chain at the timestamp's time): a trusted root that does not
	// match Fulcio, the TSA or the log fails here, before a signature nobody can verify
	// is pushed.
	m.w.apply(&opts, nil)
	b, err := sgsign.Bundle(&sgsign.DSSEData{Data: payload, PayloadType: inTotoPayloadType}, kp, opts)
	if err != nil {
		return fmt.Errorf("signing %s keyless as %s: %w", d, m.id, err)
	}
	return pushBundle(ctx, reg, d, b, ctypes.CosignSignPredicateType)
}

// keylessChecker recognises the bundles a keyless identity signed: a Fulcio certificate
// of that identity (an exact subject, or a subject regexp), chained to a CA of the
// trusted root at a time one of its observers vouches for (keyless.go's check, as the
// verify policy runs it).
type keylessChecker struct {
	signer types.TrustedSigner
	kl     *keyless
}

// newKeylessChecker checks s, a keyless signer (types.TrustedSigner.Validate), against
// the trusted root at path trustedRoot.
func newKeylessChecker(trustedRoot string, s types.TrustedSigner) (*keylessChecker, error) {
	if !s.Keyless() {
		return nil, fmt.Errorf("%s is not a keyless identity", s)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("certificate %s: %w", s, err)
	}
	id, err := newIdentity(s, 0)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", s, err)
	}
	kl, err := newKeyless(trustedRoot, []identity{id})
	if err != nil {
		return nil, err
	}
	return &keylessChecker{signer: s, kl: kl}, nil
}

// String is "certificate identity S from I", or "certificate identity matching R from I".
func (c *keylessChecker) String() string { return "certificate " + c.signer.String() }

// lookup checks t's bundle referrers; keyless signatures are not looked for in the
// legacy format.
func (c *keylessChecker) lookup(ctx context.Context, reg registry.Client, t target, f Format) (check, error) {
	var out check
	if f != FormatBundle {
		return out, nil
	}
	stored, err := readBundles(ctx, reg, t, isSignatureType)
	if err != nil {
		return out, err
	}
	for _, sb := range stored {
		ob, reason := openBundle(sb.raw)
		if reason == "" && !ob.isSignature() {
			continue
		}
		out.stored++
		if reason == "" {
			reason = c.verify(ob)
		}
		switch {
		case reason != "":
			out.reason = fmt.Sprintf("bundle %s: %s", sb.digest, reason)
		case slices.Contains(ob.subjects, t.digest.DigestStr()):
			out.ok = true
			return out, nil
		default:
			out.other = strings.Join(ob.subjects, ", ")
		}
	}
	return out, nil
}

// verify says why ob is not a signature of c's identity, or "".
func (c *keylessChecker) verify(ob openedBundle) string {
	vc, err := ob.bundle.VerificationContent()
	if err != nil {
		return fmt.Sprintf("unreadable verification material: %v", err)
	}
	leaf := vc.Certificate()
	if leaf == nil {
		return "signed with a key, not with a " + c.String()
	}
	if _, why := c.kl.signed(ob.bundle, leaf); why != "" {
		return why
	}
	if len(ob.subjects) == 0 {
		return "statement names no subject digest"
	}
	return ""
}

// TimestampURL is the RFC 3161 endpoint of a timestamp authority URL: u itself, or
// with sigstore timestamp-authority's /api/v1/timestamp when u has no path.
func TimestampURL(u string) (string, error) {
	parsed, err := httpURL(u)
	if err != nil {
		return "", fmt.Errorf("timestamp authority URL: %w", err)
	}
	if parsed.Path == "" || parsed.Path == "/" {
		parsed.Path = defaultTimestampPath
	}
	return parsed.String(), nil
}

func httpURL(u string) (*url.URL, error) {
	parsed, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
		return nil, refuse(ErrBadURL, "%q: want http(s)://host[:port][/path]", u)
	}
	return parsed, nil
}

// readIdentityToken reads the token file and the certificate identity Fulcio will give
// it. The token's signature is not checked here: Fulcio checks it, and a token that
// claims another identity gets no certificate.
func readIdentityToken(path string) (string, Identity, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", Identity{}, fmt.Errorf("reading identity token: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	id, err := TokenIdentity(tok)
	if err != nil {
		return "", Identity{}, fmt.Errorf("identity token %s: %w", path, err)
	}
	return tok, id, nil
}

// TokenIdentity is the certificate identity Fulcio writes for an OIDC identity token,
// read from its claims as Fulcio reads them: for a Kubernetes service-account token
// (a kubernetes.io claim), https://kubernetes.io/namespaces/NS/serviceaccounts/SA; for a
// token with a verified email claim, that email. The issuer is the token's iss. Other
// kinds of token (CI providers' workflow identities) are refused: the identity their
// certificate carries cannot be told from the token alone.
func TokenIdentity(token string) (Identity, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Identity{}, refuse(ErrUnsupportedToken, "not a JWT (want header.payload.signature)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Identity{}, fmt.Errorf("decoding the JWT payload: %w", err)
	}
	var claims struct {
		Issuer        string `json:"iss"`
		Email         string `json:"email"`
		EmailVerified any    `json:"email_verified"`
		Kubernetes    *struct {
			Namespace      string `json:"namespace"`
			ServiceAccount struct {
				Name string `json:"name"`
			} `json:"serviceaccount"`
		} `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Identity{}, fmt.Errorf("decoding the JWT claims: %w", err)
	}
	if claims.Issuer == "" {
		return Identity{}, refuse(ErrUnsupportedToken, "the token has no iss claim")
	}
	switch k := claims.Kubernetes; {
	case k != nil:
		if k.Namespace == "" || k.ServiceAccount.Name == "" {
			return Identity{}, refuse(ErrUnsupportedToken, "the kubernetes.io claim names no namespace or service account")
		}
		u := url.URL{Scheme: "https", Host: "kubernetes.io", Path: fmt.Sprintf("/namespaces/%s/serviceaccounts/%s", k.Namespace, k.ServiceAccount.Name)}
		return Identity{Issuer: claims.Issuer, Subject: u.String()}, nil
	case claims.Email != "":
		if v, _ := claims.EmailVerified.(bool); !v && claims.EmailVerified != "true" {
			return Identity{}, refuse(ErrUnsupportedToken, "email %s is not verified (email_verified): Fulcio refuses it", claims.Email)
		}
		return Identity{Issuer: claims.Issuer, Subject: claims.Email}, nil
	default:
		return Identity{}, refuse(ErrUnsupportedToken, "issuer %s: only Kubernetes service-account tokens (a kubernetes.io claim) and verified email tokens are supported", claims.Issuer)
	}
}
