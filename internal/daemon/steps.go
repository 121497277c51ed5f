package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/kube"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/types"
)

// steps are the sign and promote steps of a daemon, built once at start so that a missing
// or undecryptable key stops the daemon before it accepts any event.
type steps struct {
	sign    signStep
	promote promoteStep
}

func newSteps(ctx context.Context, cfg *config.Config, o *options) (*steps, error) {
	needSign, needVerify := false, false
	for _, p := range cfg.Pipelines {
		needSign = needSign || p.Sign
		for _, d := range p.Promote {
			needVerify = needVerify || d.RequireSignature
		}
	}
	kc, err := kube.ForKeys("promoter", cfg.Keys.Cosign, cfg.Keys.Public)
	if err != nil {
		return nil, err
	}
	st := &steps{}
	var verifierKey *sign.Verifier
	if needSign {
		if cfg.Keys.Cosign == "" {
			return nil, errors.New("keys.cosign is not set, but a pipeline has sign: true; generate a key with `promoter keygen` and set keys.cosign")
		}
		password, err := keyPassword(cfg)
		if err != nil {
			return nil, err
		}
		key, err := sign.LoadSigner(ctx, cfg.Keys.Cosign, password, kc)
		if err != nil {
			return nil, fmt.Errorf("keys.cosign: %w", err)
		}
		format, err := sign.ParseFormat(cfg.Sign.Format)
		if err != nil {
			return nil, fmt.Errorf("sign.format: %w", err)
		}
		s, err := sign.NewSigner(key, o.registry, sign.WithFormat(format), sign.WithLogger(o.log))
		if err != nil {
			return nil, fmt.Errorf("keys.cosign: %w", err)
		}
		st.sign = &signer{s: s, m: o.metrics}
		if verifierKey, err = sign.NewVerifier(key, o.registry); err != nil {
			return nil, fmt.Errorf("keys.cosign: %w", err)
		}
	}
	if cfg.Keys.Public != "" {
		pub, err := sign.LoadVerifier(ctx, cfg.Keys.Public, kc)
		if err != nil {
			return nil, fmt.Errorf("keys.public: %w", err)
		}
		if verifierKey, err = sign.NewVerifier(pub, o.registry); err != nil {
			return nil, fmt.Errorf("keys.public: %w", err)
		}
	}
	if needVerify && verifierKey == nil {
		return nil, errors.New("a destination has requireSignature: true, but neither keys.public nor keys.cosign is set to verify with")
	}
	p, err := promote.New(o.registry, promote.WithJobs(cfg.Promote.Jobs), promote.WithTimeout(cfg.Promote.Timeout),
		promote.WithMetrics(o.metrics), promote.WithLogger(o.log))
	if err != nil {
		return nil, err
	}
	pr := &promoter{p: p}
	if verifierKey != nil {
		pr.verify = func(ctx context.Context, ref string) error {
			_, err := verifierKey.Verify(ctx, ref)
			return err
		}
	}
	st.promote = pr
	return st, nil
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

// signer counts and times signing.
type signer struct {
	s *sign.Signer
	m *metrics.Metrics
}

func (s *signer) Sign(ctx context.Context, ref string) error {
	start := time.Now()
	_, err := s.s.Sign(ctx, ref)
	outcome := "signed"
	if err != nil {
		outcome = "failed"
	}
	s.m.SignTotal.WithLabelValues(outcome).Inc()
	s.m.SignDuration.Observe(time.Since(start).Seconds())
	return err
}

// promoter promotes the revision tag, then moves the destination's mutable tags (for
// example latest) to it.
type promoter struct {
	p      *promote.Promoter
	verify func(ctx context.Context, ref string) error
}

func (p *promoter) Promote(ctx context.Context, src, dst string, d types.Destination) (string, error) {
	opt := promote.Options{MutableTags: d.MutableTags}
	if d.RequireSignature {
		opt.Verify = p.verify
	}
	res, err := p.p.Promote(ctx, src, dst, opt)
	if err != nil {
		return "", err
	}
	for _, tag := range d.MutableTags {
		// Everything was just copied: this only writes the tag.
		if _, err := p.p.Promote(ctx, src, d.To.Tag(tag), opt); err != nil {
			return "", fmt.Errorf("moving %s:%s: %w", d.To, tag, err)
		}
	}
	return res.Digest, nil
}
