// Package sign owns keys, signing and verification of merged indexes and their platform
// children, in the forms the cosign CLI reads.
//
// # Keys
//
// Keys are cosign's: an encrypted private key as `cosign generate-key-pair` (or
// GenerateKeyPair, or `promoter keygen`) writes it, or a plain PEM private key; from a
// file, env://NAME, or a Kubernetes Secret k8s://namespace/name holding cosign.key,
// cosign.password and cosign.pub (cosign's own convention). Public keys are PEM.
//
// # Keyless signing
//
// NewKeylessSigner signs with no long-lived key: for each digest a fresh key, a Fulcio
// certificate for it bought with an OIDC identity token read from a file (in Kubernetes
// a projected service-account token with audience sigstore, read again for every
// signature because the kubelet rotates it), and an RFC 3161 timestamp of the signature
// from a timestamp authority. The certificate lives 10 minutes; the timestamp proves the
// signature was made within them, so it verifies later with the TSA's time, never the
// clock's. The bundle holds the same in-toto statement a key signature holds, with the
// certificate and the timestamp as verification material (what `cosign verify
// --trusted-root T --certificate-identity S --certificate-oidc-issuer I
// --use-signed-timestamps --insecure-ignore-sct --insecure-ignore-tlog` checks), and is
// verified against the trusted root before it is pushed; keyless signatures are bundles
// only. The signer's Identity is read from the token's claims as Fulcio reads them
// (https://kubernetes.io/namespaces/NS/serviceaccounts/SA for a service account, from
// the token's issuer); a digest is skipped when a bundle of that identity verifies
// against the trusted root with a timestamp, and NewKeylessVerifier checks the same.
// No transparency log entry is written yet.
//
// # What is signed
//
// The index digest and each platform child's digest, each with its own signature, so a
// consumer that pulls one platform by digest can verify it. Attestation manifests
// (platform unknown/unknown) are not signed. A digest that already has a signature of the
// chosen format that verifies with the same key (or keyless identity) is skipped, so
// retries and re-runs do not pile up signatures.
//
// # Formats, and why the default is FormatBundle
//
// FormatBundle is what cosign v3 writes by default: `cosign sign --key K
// --tlog-upload=false` produces a v0.3 sigstore bundle holding a DSSE envelope of an
// in-toto statement (subject = the digest, predicate type
// https://sigstore.dev/cosign/sign/v1), whose only verification material is the public
// key hint (no transparency log entry, no timestamp), pushed as an OCI 1.1 referrer with
// artifactType application/vnd.dev.sigstore.bundle.v0.3+json. This package builds the
// bundle with the same sigstore-go call and pushes it with cosign's own
// ociremote.WriteAttestationNewBundleFormat. Registries without the referrers API (such
// as distribution v3.1) get the sha256-<hex> fallback tag index, which go-containerregistry
// maintains on push and reads back on listing, as cosign does.
//
// FormatLegacy is the sha256-<hex>.sig tag: an image whose layers are simple-signing
// payloads ("cosign container image signature") with the base64 signature in the
// dev.cosignproject.cosign/signature annotation; what cosign v1/v2 write and cosign v3
// with --new-bundle-format=false. Written with cosign's oci/static, oci/mutate (with its
// duplicate detector) and oci/remote.WriteSignatures.
//
// The default had to be the format the real cosign v3.1.3 CLI verifies with exactly
// `cosign verify --key cosign.pub --insecure-ignore-tlog REF@DIGEST`. Tested with the
// binary (cosign_test.go, offline: a dead proxy for every non-loopback host), both formats
// pass that exact command, for the index digest and for a child digest: cosign v3 verify
// lists bundle referrers first and, only when there are none, reads the .sig tag (its
// output shows which: claim type https://sigstore.dev/cosign/sign/v1 for a bundle,
// "cosign container image signature" for a .sig payload). The tie is broken by how the
// two behave together (TestCosignIgnoresLegacyOnceABundleExists): once any bundle
// referrer exists for a digest, cosign verify no longer looks at the .sig tag, so a valid
// legacy signature stops verifying in cosign as soon as anyone adds a bundle, while
// bundle signatures keep verifying whatever is added later. Bundles are also cosign v3's
// own default (its --new-bundle-format flag is deprecated: "this will be the only
// supported format in future versions") and OCI 1.1 referrers, which copy tools move with
// the image. So the default is FormatBundle; choose FormatLegacy for consumers on cosign
// v2 or tools that only read .sig tags (cosign v3 reads legacy with the same command, as
// long as no bundle exists for the digest).
//
// # Verification
//
// Verifier checks what Signer signed. Offline, with a public key (or, made by
// NewKeylessVerifier, promoter's own keyless identity and its trusted root; made by
// NewIdentityVerifier, any keyless identity, by exact subject or regexp, as `promoter
// verify --certificate-identity` checks it): no transparency log, CA
// or timestamp authority is contacted, only the registry. Either format is accepted (bundles are tried first, as
// cosign does, but unlike cosign a failing bundle does not hide a valid .sig). Every
// digest must verify; a failure is a *VerifyError wrapping ErrNoSignature,
// ErrBadSignature (another key, or altered) or ErrWrongDigest (a valid signature that
// names another digest: copied from another image).
//
// # Verify policies
//
// Policy is the trust policy of the arch images promoter did not build (a merge-only
// pipeline's CI pushes them): promoter signs only what it can vouch for. NewPolicy checks
// a types.VerifyPolicy (types.VerifyPolicy.Validate, the one copy of a policy's shape
// rules) and loads it once; Policy.Verify takes one image by digest (a single platform
// manifest) and accepts it when any signer of the policy signed exactly that digest:
//
//   - a key (a PEM public key: a file, env://NAME or k8s://namespace/name), in either
//     format: a bundle referrer (or the sha256-<hex> fallback tag) or a legacy .sig
//     signature, checked as Verifier checks them (offline: no log, no timestamp) and by
//     the same code;
//   - a keyless identity (an OIDC issuer and a subject, or a subject regexp starting
//     with ^, matched as cosign's --certificate-identity-regexp: anchor its end with $
//     too), in a bundle referrer whose verification material is a Fulcio certificate.
//     The certificate must chain to a CA of the policy's trusted root (a sigstore
//     trusted_root.json) at a time an observer of that root vouches for: an RFC 3161
//     timestamp of one of its timestamp authorities, or the integrated time of an entry
//     of one of its transparency logs (a bundle's log entries are then verified too).
//     Its SAN and issuer must match the identity (sigstore-go's
//     verify.WithCertificateIdentity).
//
// Either way the statement (or simple-signing payload) must name the digest: a valid
// signature copied from another image is refused, and the refusal says so. When the
// policy requires attestations, each must be an in-toto statement about the digest of
// that predicate type, signed by any signer of the policy (not necessarily the image's):
// a bundle referrer (what cosign v3 attest writes, annotated
// dev.sigstore.bundle.predicateType), or, for keys, a layer of the legacy
// sha256-<hex>.att tag. A required builder id is compared with the SLSA provenance's
// predicate.runDetails.builder.id (v1) or predicate.builder.id (v0.2).
//
// The evidence names the signer: "key <ref> (SHA256:<fingerprint>)", the fingerprint
// being the unpadded base64 of the SHA-256 of the DER public key, as ssh-keygen -l
// prints it (cosign's bundle key hint is the padded form, so the foreign key a bundle
// names is reported the same way), or "<subject> from <issuer>" for a certificate. When
// several signers signed, the first listed in the policy is named. A refusal is an
// *UntrustedError (ErrUntrusted) naming the image, what was expected and what was found;
// a registry that cannot be read is a plain error, so the caller retries it.
//
// Not supported yet: KMS key references (Validate refuses them; export the public key
// to a PEM file), keyless signatures and attestations in the legacy .sig/.att formats
// (certificate in a layer annotation, cosign v2's keyless default; they are reported as
// unsupported, never accepted), and signed certificate timestamps: unlike cosign
// without --insecure-ignore-sct, a certificate's SCT is not required, the chain and the
// observer's timestamp are what is checked. The trusted root is read once, by
// NewPolicy; nothing is fetched from a TUF repository.
//
// # What it links
//
// Bundles are written and verified with sigstore-go; keys are read and written with
// sigstore's signature and cryptoutils packages and go-securesystemslib's encrypted
// (cosign's key format, not cosign's code); the KMS providers are sigstore's. cosign's
// library is used only for the OCI layout it owns: the sha256-<hex>.sig and .att tag
// images (pkg/oci/remote, mutate, static) and the bundle referrer it writes
// (ociremote.WriteAttestationNewBundleFormat). Its pkg/cosign, which links the Rekor,
// Fulcio and TUF clients, is imported by tests only, to hold the formats to it.
//
// The package must not know about pipelines, revisions or promotion.
package sign
