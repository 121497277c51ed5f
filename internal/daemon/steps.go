package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/sigstore/sigstore/pkg/signature"
	"k8s.io/client-go/kubernetes"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/kube"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/types"
)

// newSteps builds the sign and promote steps once, at start, so that a key that cannot be
// read or decrypted (or, signing keyless, an identity token or trusted root that cannot
// be read) stops the daemon before it accepts any event. Which keys must be set
// is the configuration's rule (config validation); this loads them. signer is nil when no
// pipeline signs.
func newSteps(ctx context.Context, cfg *config.Config, o *options) (signer *sign.Signer, promoter *promote.Promoter, err error) {
	kc, err := kube.ForKeys("promoter", append([]string{cfg.Keys.Cosign}, cfg.Keys.Public...)...)
	if err != nil {
		return nil, nil, err
	}
	// Whom requireSignature accepts: promoter's own signatures (its keyless identity, or
	// its key unless keys.public lists the keys), keys.public, keys.identities.
	trusted := sign.Trusted{Identities: identities(cfg.Keys.Identities), TrustedRoot: cfg.Sign.TrustedRoot}
	if signer, err = newSigner(ctx, cfg, o, kc, &trusted); err != nil {
		return nil, nil, err
	}
	for i, ref := range cfg.Keys.Public {
		pub, err := sign.OpenVerifier(ctx, ref, kc)
		if err != nil {
			return nil, nil, fmt.Errorf("keys.public[%d]: %w", i, err)
		}
		trusted.Keys = append(trusted.Keys, pub)
	}
	var verifier *sign.Verifier
	if trusted.Own != nil || len(trusted.Identities) > 0 || len(trusted.Keys) > 0 {
		if verifier, err = sign.NewTrustedVerifier(o.registry, trusted); err != nil {
			return nil, nil, fmt.Errorf("requireSignature's signers (keys.public, keys.identities, sign.trustedRoot): %w", err)
		}
	}
	popts := []promote.Option{promote.WithJobs(cfg.Promote.Jobs), promote.WithTimeout(cfg.Promote.Timeout),
		promote.WithMetrics(o.metrics), promote.WithLogger(o.log)}
	if verifier != nil {
		popts = append(popts, promote.WithVerify(func(ctx context.Context, ref string) error {
			_, err := verifier.Verify(ctx, ref)
			return err
		}))
	}
	if promoter, err = promote.New(o.registry, popts...); err != nil {
		return nil, nil, err
	}
	return signer, promoter, nil
}

// newSigner is the signer of the pipelines that sign (nil when none does): keyless, or
// with keys.cosign. It adds to trusted what promoter's own signatures are: its keyless
// identity, or its key unless keys.public lists the keys.
func newSigner(ctx context.Context, cfg *config.Config, o *options, kc kubernetes.Interface, trusted *sign.Trusted) (*sign.Signer, error) {
	needSign := false
	for _, p := range cfg.Pipelines {
		needSign = needSign || p.Sign
	}
	switch {
	case !needSign:
		return nil, nil
	case cfg.Sign.Keyless():
		signer, err := newKeylessSigner(cfg, o)
		if err != nil {
			return nil, err
		}
		identity, _ := signer.Identity()
		trusted.Own = &identity
		o.log.InfoContext(ctx, "signing keyless", "identity", identity.Subject, "issuer", identity.Issuer,
			"fulcio", cfg.Sign.FulcioURL, "tsa", cfg.Sign.TSAURL, "rekor", cfg.Sign.RekorURL)
		return signer, nil
	}
	password, err := keyPassword(cfg)
	if err != nil {
		return nil, err
	}
	key, err := sign.OpenKey(ctx, cfg.Keys.Cosign, password, kc)
	if err != nil {
		return nil, fmt.Errorf("keys.cosign: %w", err)
	}
	format, err := sign.ParseFormat(cfg.Sign.Format)
	if err != nil {
		return nil, fmt.Errorf("sign.format: %w", err)
	}
	w := sign.Witnesses{TSAURL: cfg.Sign.TSAURL, RekorURL: cfg.Sign.RekorURL, TrustedRoot: cfg.Sign.TrustedRoot}
	signer, err := sign.NewSigner(key, o.registry, sign.WithFormat(format), sign.WithWitnesses(w),
		sign.WithLogger(o.log), sign.WithMetrics(o.metrics))
	if err != nil {
		return nil, fmt.Errorf("keys.cosign: %w", err)
	}
	if cfg.Sign.Witnessed() {
		o.log.InfoContext(ctx, "key signatures are witnessed", "tsa", cfg.Sign.TSAURL, "rekor", cfg.Sign.RekorURL)
	}
	if len(cfg.Keys.Public) == 0 {
		trusted.Keys = []signature.Verifier{key}
	}
	return signer, nil
}

// newKeylessSigner signs with a Fulcio certificate for promoter's identity token and a
// timestamp (sign.fulcioURL, sign.identityToken, sign.tsaURL, sign.trustedRoot; config
// validation checked they are all set), and a log entry when sign.rekorURL is set. The token and the trusted root are read now, so a
// missing or unreadable one stops the start.
func newKeylessSigner(cfg *config.Config, o *options) (*sign.Signer, error) {
	k := sign.Keyless{FulcioURL: cfg.Sign.FulcioURL, IdentityToken: cfg.Sign.IdentityToken, TSAURL: cfg.Sign.TSAURL,
		RekorURL: cfg.Sign.RekorURL, TrustedRoot: cfg.Sign.TrustedRoot}
	s, err := sign.NewKeylessSigner(k, o.registry, sign.WithFormat(sign.Format(cfg.Sign.Format)), sign.WithLogger(o.log), sign.WithMetrics(o.metrics))
	if err != nil {
		return nil, fmt.Errorf("keyless signing (sign.identityToken %s, sign.trustedRoot %s): %w", k.IdentityToken, k.TrustedRoot, err)
	}
	return s, nil
}

// identities are keys.identities as the sign package takes them.
func identities(ids []config.Identity) []types.TrustedSigner {
	out := make([]types.TrustedSigner, len(ids))
	for i, id := range ids {
		out[i] = types.TrustedSigner{Issuer: id.Issuer, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp}
	}
	return out
}

// keyPassword is keys.password, else $COSIGN_PASSWORD as the cosign CLI reads it.
func keyPassword(cfg *config.Config) ([]byte, error) {
	if cfg.Keys.Password.IsSet() {
		pw, err := cfg.Keys.Password.Resolve()
		if err != nil {
			return nil, fmt.Errorf("keys.password: %w", err)
		}
		return []byte(pw), nil
	}
	return []byte(os.Getenv("COSIGN_PASSWORD")), nil
}
