package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/kube"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
)

// newSteps builds the sign and promote steps once, at start, so that a key that cannot be
// read or decrypted (or, signing keyless, an identity token or trusted root that cannot
// be read) stops the daemon before it accepts any event. Which keys must be set
// is the configuration's rule (config validation); this loads them. signer is nil when no
// pipeline signs.
func newSteps(ctx context.Context, cfg *config.Config, o *options) (signer *sign.Signer, promoter *promote.Promoter, err error) {
	needSign := false
	for _, p := range cfg.Pipelines {
		needSign = needSign || p.Sign
	}
	kc, err := kube.ForKeys("promoter", append([]string{cfg.Keys.Cosign}, cfg.Keys.Public...)...)
	if err != nil {
		return nil, nil, err
	}
	var verifier *sign.Verifier
	var identity sign.Identity // promoter's own, when it signs keyless
	keyless := needSign && cfg.Sign.Keyless()
	switch {
	case keyless:
		if signer, err = newKeylessSigner(cfg, o); err != nil {
			return nil, nil, err
		}
		identity, _ = signer.Identity()
		o.log.InfoContext(ctx, "signing keyless", "identity", identity.Subject, "issuer", identity.Issuer,
			"fulcio", cfg.Sign.FulcioURL, "tsa", cfg.Sign.TSAURL, "rekor", cfg.Sign.RekorURL)
		if verifier, err = sign.NewKeylessVerifier(o.registry, cfg.Sign.TrustedRoot, identity); err != nil {
			return nil, nil, fmt.Errorf("sign.trustedRoot: %w", err)
		}
	case needSign:
		password, err := keyPassword(cfg)
		if err != nil {
			return nil, nil, err
		}
		key, err := sign.OpenKey(ctx, cfg.Keys.Cosign, password, kc)
		if err != nil {
			return nil, nil, fmt.Errorf("keys.cosign: %w", err)
		}
		format, err := sign.ParseFormat(cfg.Sign.Format)
		if err != nil {
			return nil, nil, fmt.Errorf("sign.format: %w", err)
		}
		w := sign.Witnesses{TSAURL: cfg.Sign.TSAURL, RekorURL: cfg.Sign.RekorURL, TrustedRoot: cfg.Sign.TrustedRoot}
		if signer, err = sign.NewSigner(key, o.registry, sign.WithFormat(format), sign.WithWitnesses(w),
			sign.WithLogger(o.log), sign.WithMetrics(o.metrics)); err != nil {
			return nil, nil, fmt.Errorf("keys.cosign: %w", err)
		}
		if cfg.Sign.Witnessed() {
			o.log.InfoContext(ctx, "key signatures are witnessed", "tsa", cfg.Sign.TSAURL, "rekor", cfg.Sign.RekorURL)
		}
		if verifier, err = sign.NewVerifier(o.registry, key); err != nil {
			return nil, nil, fmt.Errorf("keys.cosign: %w", err)
		}
	}
	if len(cfg.Keys.Public) > 0 {
		pubs := make([]signature.Verifier, len(cfg.Keys.Public))
		for i, ref := range cfg.Keys.Public {
			if pubs[i], err = sign.LoadVerifier(ctx, ref, kc); err != nil {
				return nil, nil, fmt.Errorf("keys.public[%d]: %w", i, err)
			}
		}
		if keyless {
			// promoter's own keyless signatures, or the listed keys' (moving from a key).
			verifier, err = sign.NewKeylessVerifier(o.registry, cfg.Sign.TrustedRoot, identity, pubs...)
		} else {
			verifier, err = sign.NewVerifier(o.registry, pubs...)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("keys.public: %w", err)
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
