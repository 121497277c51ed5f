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
// read or decrypted stops the daemon before it accepts any event. Which keys must be set
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
	if needSign {
		password, err := keyPassword(cfg)
		if err != nil {
			return nil, nil, err
		}
		key, err := sign.LoadSigner(ctx, cfg.Keys.Cosign, password, kc)
		if err != nil {
			return nil, nil, fmt.Errorf("keys.cosign: %w", err)
		}
		format, err := sign.ParseFormat(cfg.Sign.Format)
		if err != nil {
			return nil, nil, fmt.Errorf("sign.format: %w", err)
		}
		if signer, err = sign.NewSigner(key, o.registry, sign.WithFormat(format), sign.WithLogger(o.log), sign.WithMetrics(o.metrics)); err != nil {
			return nil, nil, fmt.Errorf("keys.cosign: %w", err)
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
		if verifier, err = sign.NewVerifier(o.registry, pubs...); err != nil {
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
