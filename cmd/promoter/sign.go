package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/promoter-dev/promoter/internal/kube"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/types"
)

// passwordEnv is where cosign, and so promoter, reads the private key password from.
const passwordEnv = "COSIGN_PASSWORD"

type signOptions struct {
	key    string
	format string
}

func newSignCmd(g *globalOptions) *cobra.Command {
	o := &signOptions{}
	cmd := &cobra.Command{
		Use:   "sign --key KEY REF",
		Short: "Sign an index and its platform images where cosign finds the signatures",
		Long: `Sign what REF (a tag or a digest) points at: an index and each of its platform
children, or a lone image. Attestation manifests (platform unknown/unknown) are not signed.
Digests that already carry a valid signature by this key are left alone.

The key is a cosign key file (password from $COSIGN_PASSWORD, or asked on a terminal), a PEM
private key, env://NAME, k8s://namespace/name (a secret with cosign.key and
cosign.password, read with the usual kubeconfig), or a KMS key as cosign takes it:
awskms://[ENDPOINT]/alias/NAME (or a key id or ARN), gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K,
azurekms://VAULT.vault.azure.net/KEY, hashivault://KEY, or NAME://... for a
sigstore-kms-NAME plugin on PATH. A KMS key signs remotely, with the credentials its cloud
SDK finds (for AWS: the AWS_* environment, a web-identity token or the instance role);
'promoter keygen --kms' creates one. No transparency log or CA is contacted; verify with
'promoter verify' or 'cosign verify --key cosign.pub --insecure-ignore-tlog'.`,
		Example: `  COSIGN_PASSWORD=... promoter sign --key cosign.key staging.example/acme/web:3f2c1a9
  promoter sign --key k8s://promoter/signing-key --format legacy staging.example/acme/web@sha256:...
  promoter sign --key awskms:///alias/promoter-signing staging.example/acme/web:3f2c1a9`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSign(cmd.Context(), g, o, args[0], cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.key, "key", "", "private key: cosign key file, PEM file, env://NAME, k8s://namespace/name, or a KMS key (awskms://, gcpkms://, azurekms://, hashivault://, NAME:// plugin) (required)")
	cmd.Flags().StringVar(&o.format, "format", "", fmt.Sprintf("signature format: %s or %s (default %s)", sign.FormatBundle, sign.FormatLegacy, sign.DefaultFormat))
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func runSign(ctx context.Context, g *globalOptions, o *signOptions, ref string, stdin io.Reader, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return err
	}
	format, err := sign.ParseFormat(o.format)
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	kc, err := kube.ForKeys("promoter", o.key)
	if err != nil {
		return err
	}
	password, err := keyPassword(o.key, stdin, stderr, false)
	if err != nil {
		return err
	}
	key, err := sign.LoadSigner(ctx, o.key, password, kc)
	if err != nil {
		return err
	}
	s, err := sign.NewSigner(key, g.registry(), sign.WithFormat(format), sign.WithLogger(log))
	if err != nil {
		return err
	}
	signed, err := s.Sign(ctx, ref)
	for _, r := range signed {
		state := "signed"
		if r.Skipped {
			state = "already signed"
		}
		fmt.Fprintln(stdout, fields(state, r.Digest, r.Platform))
	}
	return err
}

type verifyOptions struct {
	keys []string
	// predicateType, when set, verifies attestations of that type instead of signatures.
	predicateType string
	// The keyless identity, as cosign verify's flags of the same names.
	trustedRoot, issuer, identity, identityRegexp string
}

func newVerifyCmd(g *globalOptions) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify (--key PUB | --trusted-root FILE --certificate-oidc-issuer URL --certificate-identity ID) [--type PREDICATE] REF",
		Short: "Verify the signatures (or attestations) of an index and its platform images offline",
		Long: `Verify that what REF points at (an index and each platform child, or a lone image;
attestation manifests are not checked) carries a signature that verifies and names that very
digest. Prints one line per digest verified and exits non-zero at the first one that does
not, saying why: no signature, a signature by another signer (or altered), or a signature
copied from another digest. Only the registry is contacted.

With --key, a signature in either format (sigstore bundle referrer or sha256-<hex>.sig tag)
by the public key: a PEM public key (cosign.pub), env://NAME, k8s://namespace/name (the
secret's cosign.pub), or a KMS key as 'promoter sign --key' takes it (awskms://,
gcpkms://, azurekms://, hashivault://, NAME:// plugin; its public key is read from the
KMS once, and signatures are checked locally). Repeat --key to accept a signature by any
of several keys, as during a key rotation.

Keyless, with cosign verify's flags instead of --key: a sigstore bundle whose Fulcio
certificate was issued by --certificate-oidc-issuer to --certificate-identity (or to an
identity --certificate-identity-regexp, a Go regular expression starting with ^, matches),
and chains to a CA of --trusted-root (a sigstore trusted_root.json: cosign trusted-root
create, or the public-good root) at a time the bundle proves with an RFC 3161 timestamp or
a transparency log entry of that root. The log is not contacted.

With --type, as 'cosign verify-attestation --type': each digest must carry instead an
in-toto attestation of that predicate type (a URI, or one of cosign's names:
slsaprovenance1 is https://slsa.dev/provenance/v1, and slsaprovenance, slsaprovenance02,
link, spdx, spdxjson, cyclonedx, vuln, openvex, custom) signed by --key or the keyless
identity, whose statement's subject is that digest: a sigstore bundle referrer (what
'cosign attest' writes), or for keys a sha256-<hex>.att tag (cosign's legacy format). The
line printed per digest names the attestation and its signer. No signature is required.`,
		Example: `  promoter verify --key cosign.pub staging.example/acme/web:3f2c1a9
  promoter verify --trusted-root trusted_root.json \
    --certificate-oidc-issuer https://token.actions.githubusercontent.com \
    --certificate-identity https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main \
    staging.example/acme/web:3f2c1a9
  promoter verify --key cosign.pub --type slsaprovenance1 staging.example/acme/web:3f2c1a9`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), g, o, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVar(&o.keys, "key", nil, "public key: PEM file, env://NAME, k8s://namespace/name, or a KMS key (awskms://, gcpkms://, azurekms://, hashivault://, NAME:// plugin) (repeat to accept any of several)")
	cmd.Flags().StringVar(&o.predicateType, "type", "", "verify attestations of this in-toto predicate type instead of signatures: a URI or "+sign.PredicateTypeNames)
	cmd.Flags().StringVar(&o.trustedRoot, "trusted-root", "", "keyless: sigstore trusted_root.json the certificate chains to (Fulcio CAs, timestamp authorities, logs)")
	cmd.Flags().StringVar(&o.issuer, "certificate-oidc-issuer", "", "keyless: OIDC issuer of the certificate, e.g. https://token.actions.githubusercontent.com")
	cmd.Flags().StringVar(&o.identity, "certificate-identity", "", "keyless: the certificate's exact identity (its SAN: a URI or an email)")
	cmd.Flags().StringVar(&o.identityRegexp, "certificate-identity-regexp", "", "keyless: a Go regular expression, starting with ^, the certificate's identity must match instead")
	return cmd
}

// signer is the keyless identity the flags name, false when verifying with --key. It
// is an error to give both --key and keyless flags, or neither, or an identity that
// types.TrustedSigner.Validate refuses (each problem named by its flag).
func (o *verifyOptions) signer() (types.TrustedSigner, bool, error) {
	s := types.TrustedSigner{Issuer: o.issuer, Subject: o.identity, SubjectRegexp: o.identityRegexp}
	keyless := s.Keyless() || o.trustedRoot != ""
	switch {
	case len(o.keys) > 0 && keyless:
		return s, false, errors.New("--key and the keyless flags (--trusted-root, --certificate-oidc-issuer, --certificate-identity, --certificate-identity-regexp) exclude each other: verify with public keys or with one certificate identity")
	case len(o.keys) > 0:
		return s, false, nil
	case !keyless:
		return s, false, errors.New("nothing to verify with: give --key PUB, or --trusted-root, --certificate-oidc-issuer and --certificate-identity (or --certificate-identity-regexp)")
	}
	var problems []string
	if o.trustedRoot == "" {
		problems = append(problems, "--trusted-root: must be set: the certificate is checked against a sigstore trusted_root.json (cosign trusted-root create, or the public-good root from https://tuf-repo-cdn.sigstore.dev); promoter does not fetch one")
	}
	var pe *types.PolicyError
	if err := s.Validate(); errors.As(err, &pe) {
		for _, p := range pe.Problems {
			problems = append(problems, identityFlag(p.Field)+": "+p.Msg)
		}
	} else if err != nil {
		return s, false, err
	}
	if len(problems) > 0 {
		return s, false, fmt.Errorf("keyless verification: %s", strings.Join(problems, "; "))
	}
	return s, true, nil
}

// identityFlag is the verify flag that sets field of a types.TrustedSigner; "" (the
// signer as a whole) is the identity flags'.
func identityFlag(field string) string {
	switch field {
	case "issuer":
		return "--certificate-oidc-issuer"
	case "subject":
		return "--certificate-identity"
	case "subjectRegexp":
		return "--certificate-identity-regexp"
	default:
		return "--certificate-identity or --certificate-identity-regexp"
	}
}

// loadVerifier loads public keys (file, env:// or k8s://) into a verifier using reg: a
// signature by any one of them verifies.
func loadVerifier(ctx context.Context, keyRefs []string, reg registry.Client) (*sign.Verifier, error) {
	kc, err := kube.ForKeys("promoter", keyRefs...)
	if err != nil {
		return nil, err
	}
	keys := make([]signature.Verifier, len(keyRefs))
	for i, ref := range keyRefs {
		if keys[i], err = sign.LoadVerifier(ctx, ref, kc); err != nil {
			return nil, err
		}
	}
	return sign.NewVerifier(reg, keys...)
}

func runVerify(ctx context.Context, g *globalOptions, o *verifyOptions, ref string, stdout io.Writer) error {
	s, keyless, err := o.signer()
	if err != nil {
		return err
	}
	var predicateType string
	if o.predicateType != "" {
		if predicateType, err = sign.PredicateType(o.predicateType); err != nil {
			return fmt.Errorf("--type: %w", err)
		}
	}
	var v *sign.Verifier
	if keyless {
		v, err = sign.NewIdentityVerifier(g.registry(), o.trustedRoot, s)
	} else {
		v, err = loadVerifier(ctx, o.keys, g.registry())
	}
	if err != nil {
		return err
	}
	if predicateType != "" {
		attested, err := v.VerifyAttestation(ctx, ref, predicateType)
		for _, a := range attested {
			fmt.Fprintln(stdout, fields("verified", a.Digest, a.Platform, "("+a.Detail+")"))
		}
		return err
	}
	checked, err := v.Verify(ctx, ref)
	for _, c := range checked {
		fmt.Fprintln(stdout, fields("verified", c.Digest, c.Platform, "("+string(c.Format)+")"))
	}
	return err
}

// fields joins the non-empty parts of an output line with spaces.
func fields(parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), " ")
}

type keygenOptions struct {
	prefix string
	// kms, when set, is the KMS key to create instead of a key pair in files.
	kms string
}

// stdoutPrefix is the --output-prefix that prints a KMS key's public key instead of
// writing it.
const stdoutPrefix = "-"

func newKeygenCmd(*globalOptions) *cobra.Command {
	o := &keygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen [--kms REF]",
		Short: "Write a cosign-compatible key pair (PREFIX.key, PREFIX.pub), or create a KMS key",
		Long: `Write an ECDSA P-256 key pair in cosign's formats: PREFIX.key, encrypted with the password
from $COSIGN_PASSWORD (or asked twice on a terminal), and PREFIX.pub. Both work with cosign
('cosign sign --key', 'cosign verify --key') and with 'promoter sign' and 'promoter verify'.
Existing files are never overwritten. For a Kubernetes secret, create it from the two files
and the password with the keys cosign.key, cosign.pub and cosign.password.

With --kms, as 'cosign generate-key-pair --kms': create the KMS key REF names (awskms://,
gcpkms://, azurekms://, hashivault://, or NAME:// for a sigstore-kms-NAME plugin; the
provider's default algorithm, ECDSA P-256 for AWS, GCP and Vault), or use the key already
there, and write only its public key, PREFIX.pub (to standard output with
--output-prefix -). The private key never leaves the KMS: sign with
'promoter sign --key REF' or keys.cosign: REF, verify with PREFIX.pub or REF. The
provider's credentials are read as its cloud SDK reads them (for AWS: the AWS_*
environment, a web-identity token or the instance role).`,
		Example: `  COSIGN_PASSWORD=... promoter keygen --output-prefix /keys/cosign
  promoter keygen --kms awskms:///alias/promoter-signing --output-prefix /keys/promoter`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.kms != "" {
				return runKeygenKMS(cmd.Context(), o, cmd.OutOrStdout())
			}
			return runKeygen(o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.prefix, "output-prefix", "cosign", "path prefix of the key files (with --kms, - prints the public key)")
	cmd.Flags().StringVar(&o.kms, "kms", "", "create this KMS key instead (awskms://, gcpkms://, azurekms://, hashivault://, NAME:// plugin) and write only its public key")
	return cmd
}

// runKeygenKMS creates the KMS key o.kms names (or finds it there) and writes its public
// key to o.prefix.pub, or prints it.
func runKeygenKMS(ctx context.Context, o *keygenOptions, stdout io.Writer) error {
	if !sign.IsKMS(o.kms) {
		return fmt.Errorf("--kms %s: want a KMS key reference: awskms://, gcpkms://, azurekms://, hashivault:// or NAME:// (a sigstore-kms-NAME plugin)", o.kms)
	}
	pubPath := o.prefix + ".pub"
	if o.prefix != stdoutPrefix {
		if _, err := os.Stat(pubPath); err == nil {
			return fmt.Errorf("%s already exists: remove it or choose another --output-prefix", pubPath)
		}
	}
	pub, err := sign.CreateKMSKey(ctx, o.kms)
	if err != nil {
		return err
	}
	if o.prefix == stdoutPrefix {
		_, err := stdout.Write(pub)
		return err
	}
	if err := writeNew(pubPath, pub, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "KMS key %s ready\npublic key written to %s\n", o.kms, pubPath)
	return nil
}

func runKeygen(o *keygenOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	privPath, pubPath := o.prefix+".key", o.prefix+".pub"
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists: remove it or choose another --output-prefix", p)
		}
	}
	password, err := keyPassword("", stdin, stderr, true)
	if err != nil {
		return err
	}
	priv, pub, err := sign.GenerateKeyPair(password)
	if err != nil {
		return err
	}
	// O_EXCL: a file that appeared since the check is not overwritten either.
	if err := writeNew(privPath, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pub, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "private key written to %s\npublic key written to %s\n", privPath, pubPath)
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	return f.Close()
}

// keyPassword finds the private key password: nothing for a KMS key (it has none),
// $COSIGN_PASSWORD when set (even empty, as cosign does), nothing for k8s:// keys (the
// secret holds it), else a prompt when stdin is a terminal. Without any of these it returns no password: a plain PEM key needs none and
// an encrypted key then fails to load with an error naming COSIGN_PASSWORD. For a new
// key (confirm) a missing password is an error instead, so no key is left unprotected
// by accident.
func keyPassword(key string, stdin io.Reader, stderr io.Writer, confirm bool) ([]byte, error) {
	if sign.IsKMS(key) {
		return nil, nil
	}
	if p, ok := os.LookupEnv(passwordEnv); ok {
		return []byte(p), nil
	}
	if strings.HasPrefix(key, "k8s://") {
		return nil, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		if confirm {
			return nil, fmt.Errorf("no password: set %s (an empty value makes an unencrypted-in-effect key)", passwordEnv)
		}
		return nil, nil
	}
	fmt.Fprint(stderr, "Enter password for private key: ")
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	if confirm {
		fmt.Fprint(stderr, "Enter password for private key again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("passwords do not match")
		}
	}
	return p, nil
}
