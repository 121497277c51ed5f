package sign

import (
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
)

// Witnesses vouch for a signature beyond its key: an RFC 3161 timestamp authority proves
// when it was made (so it can be trusted after a certificate expires, or up to the time
// a leaked key was revoked), and a Rekor v2 transparency log makes it public. Keyless
// signatures always carry a timestamp; key and KMS signatures may.
type Witnesses struct {
	// TSAURL is the timestamp authority (TimestampURL completes a bare host).
	TSAURL string
	// RekorURL is the base URL of a Rekor v2 log (https://log2025-1.rekor.sigstore.dev);
	// "" adds no log entry.
	RekorURL string
	// TrustedRoot is a sigstore trusted_root.json listing that timestamp authority and
	// log: each signature is verified against it before it is pushed, so one nobody can
	// verify is never written.
	TrustedRoot string
}

// any says whether a witness is set.
func (w Witnesses) any() bool { return w.TSAURL != "" || w.RekorURL != "" }

// witnesses are opened Witnesses: how to reach the services, and the trusted root.
// sigstore-go's clients are made per signature, from copies of the options: they set
// themselves up lazily, unguarded, and a Signer signs an index's digests at once.
type witnesses struct {
	tsa   *sgsign.TimestampAuthorityOptions // nil: no timestamp
	rekor *sgsign.RekorOptions              // nil: no log entry
	tr    root.TrustedMaterial
}

// open checks w and makes its clients; trustedRoot may be an already loaded root (keyless
// signing shares its checker's), else w.TrustedRoot is read.
func (w Witnesses) open(tr root.TrustedMaterial) (*witnesses, error) {
	if w.TrustedRoot == "" && tr == nil {
		return nil, refuse(ErrNoTrustedRoot, "a timestamp authority or transparency log needs a trusted root listing it, to check what they return")
	}
	out := &witnesses{tr: tr}
	if out.tr == nil {
		loaded, err := root.NewTrustedRootFromPath(w.TrustedRoot)
		if err != nil {
			return nil, refuse(ErrTrustedRoot, "loading trusted root %s (want a sigstore trusted_root.json): %w", w.TrustedRoot, err)
		}
		out.tr = loaded
	}
	if w.TSAURL != "" {
		u, err := TimestampURL(w.TSAURL)
		if err != nil {
			return nil, err
		}
		if len(out.tr.TimestampingAuthorities()) == 0 {
			return nil, fmt.Errorf("trusted root %s lists no timestamp authority, so the timestamps of %s could not be verified", w.TrustedRoot, u)
		}
		out.tsa = &sgsign.TimestampAuthorityOptions{URL: u, Retries: 1}
	}
	if w.RekorURL != "" {
		u, err := httpURL(w.RekorURL)
		if err != nil {
			return nil, fmt.Errorf("rekor URL: %w", err)
		}
		if len(out.tr.RekorLogs()) == 0 {
			return nil, fmt.Errorf("trusted root %s lists no transparency log, so the entries of %s could not be verified", w.TrustedRoot, w.RekorURL)
		}
		out.rekor = &sgsign.RekorOptions{BaseURL: strings.TrimSuffix(u.String(), "/"), Version: 2, Retries: 1}
	}
	return out, nil
}

// apply adds the witnesses to opts: a timestamp of the signature, a log entry, and the
// trusted root sigstore-go verifies the finished bundle against. key is the public key
// of a key signature (nil for keyless), which the verification must know by its hint.
func (w *witnesses) apply(opts *sgsign.BundleOptions, key *keypair) {
	if w == nil {
		return
	}
	// Copies: the constructors write defaults into the options they are given.
	if w.tsa != nil {
		o := *w.tsa
		opts.TimestampAuthorities = []*sgsign.TimestampAuthority{sgsign.NewTimestampAuthority(&o)}
	}
	if w.rekor != nil {
		o := *w.rekor
		opts.TransparencyLogs = []sgsign.Transparency{sgsign.NewRekor(&o)}
	}
	opts.TrustedRoot = w.tr
	if key != nil {
		keys := map[string]*root.ExpiringKey{string(key.hint): root.NewExpiringKey(key.sv, time.Time{}, time.Time{})}
		opts.TrustedRoot = root.TrustedMaterialCollection{w.tr, root.NewTrustedPublicKeyMaterialFromMapping(keys)}
	}
}
