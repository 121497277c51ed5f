package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/types"
)

// TestVerify covers pipelines[].verify: its mapping into types.VerifyPolicy, every rule
// of its validation, and the refusal of a merge-only pipeline that would sign whatever is
// pushed to staging.
func TestVerify(t *testing.T) {
	const (
		base     = "name: web\n    platforms: [linux/amd64]\n    staging: staging.example/acme/web\n    "
		building = "source: {repo: https://git.example/acme/web.git}\n    "
		root     = "trustedRoot: /etc/promoter/trusted_root.json"
		gha      = "https://token.actions.githubusercontent.com"
	)
	tests := []struct {
		name     string
		pipeline string             // the pipeline's keys after base, "\n    " between keys
		extra    string             // more pipelines, each "  - {...}\n"
		want     types.VerifyPolicy // Domain().Verify of pipelines[0]
		wantErr  map[string]string  // problem path → part of its message
	}{
		// What validates, and how it maps.
		{name: "a merge-only pipeline that does not sign needs no policy", pipeline: "sign: false"},
		{name: "a pipeline that builds and signs needs no policy", pipeline: building + "sign: true"},
		{name: "a key signer", pipeline: "sign: true\n    verify: {signers: [{key: /etc/promoter/ci.pub}]}",
			want: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "/etc/promoter/ci.pub"}}}},
		{name: "env:// and k8s:// keys", pipeline: "sign: true\n    verify: {signers: [{key: 'env://CI_PUB'}, {key: 'k8s://ci/cosign'}]}",
			want: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "env://CI_PUB"}, {Key: "k8s://ci/cosign"}}}},
		{name: "a keyless signer with its trusted root", pipeline: "sign: true\n    verify: {signers: [{issuer: " + gha + ", subject: 'https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main'}], " + root + "}",
			want: types.VerifyPolicy{
				Signers:     []types.TrustedSigner{{Issuer: gha, Subject: "https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main"}},
				TrustedRoot: "/etc/promoter/trusted_root.json",
			}},
		{name: "every key", pipeline: "sign: true\n    verify:\n      signers:\n        - {key: /etc/promoter/ci.pub}\n        - {issuer: " + gha + ", subjectRegexp: '^https://github.com/acme/web/'}\n      " + root +
			"\n      attestations: [{predicateType: 'https://slsa.dev/provenance/v1', builderID: 'https://github.com/acme/builder'}, {predicateType: 'https://spdx.dev/Document'}]",
			want: types.VerifyPolicy{
				Signers:      []types.TrustedSigner{{Key: "/etc/promoter/ci.pub"}, {Issuer: gha, SubjectRegexp: "^https://github.com/acme/web/"}},
				TrustedRoot:  "/etc/promoter/trusted_root.json",
				Attestations: []types.RequiredAttestation{{PredicateType: "https://slsa.dev/provenance/v1", BuilderID: "https://github.com/acme/builder"}, {PredicateType: "https://spdx.dev/Document"}},
			}},
		{name: "a pipeline that builds may trust signers for images it did not build", pipeline: building + "sign: true\n    verify: {signers: [{key: /etc/promoter/ci.pub}]}",
			want: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "/etc/promoter/ci.pub"}}}},
		{name: "a merge-only pipeline that does not sign may verify", pipeline: "sign: false\n    verify: {signers: [{key: /etc/promoter/ci.pub}]}",
			want: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "/etc/promoter/ci.pub"}}}},
		{name: "the explicit opt-out", pipeline: "sign: true\n    verify: {acceptUnverified: true}",
			want: types.VerifyPolicy{AcceptUnverified: true}},

		// Secure by default.
		{name: "a merge-only pipeline that signs without signers", pipeline: "sign: true",
			wantErr: map[string]string{"pipelines[0].verify": "pipeline web signs arch images nothing vouches for: it builds none (no source.repo) and lists no verify signers, so anyone who can push an arch tag to staging.example/acme/web would get it signed with the production key and promoted. List the CI signers under pipelines[].verify.signers, or opt out explicitly with verify: {acceptUnverified: true}"}},
		{name: "an empty policy is no policy", pipeline: "sign: true\n    verify: {}",
			wantErr: map[string]string{"pipelines[0].verify": "anyone who can push an arch tag"}},
		{name: "attestations are no signers", pipeline: "sign: true\n    verify: {attestations: [{predicateType: 'https://slsa.dev/provenance/v1'}]}",
			wantErr: map[string]string{"pipelines[0].verify": "anyone who can push an arch tag", "pipelines[0].verify.attestations": "need signers"}},
		{name: "the second pipeline is named by its index and its name", pipeline: "sign: false",
			extra:   "  - {name: api, platforms: [linux/amd64], staging: staging.example/acme/api, sign: true}\n",
			wantErr: map[string]string{"pipelines[1].verify": "pipeline api signs arch images nothing vouches for"}},

		// Signers.
		{name: "a signer with neither key nor issuer", pipeline: "verify: {signers: [{}]}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0]": "pipeline web: a signer is a public key (key: a PEM file, env://NAME or k8s://namespace/name) or a keyless identity (issuer, with subject or subjectRegexp); this one sets neither"}},
		{name: "a signer with key and issuer", pipeline: "verify: {signers: [{key: /ci.pub}, {key: /ci.pub, issuer: " + gha + ", subject: x}]}",
			wantErr: map[string]string{"pipelines[0].verify.signers[1]": "a signer is exactly one of the two: list the key and the identity as two signers"}},
		{name: "a key signer with a subject", pipeline: "verify: {signers: [{key: /ci.pub, subject: x}]}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0]": "sets key and a keyless identity"}},
		{name: "a keyless signer without issuer", pipeline: "verify: {signers: [{subject: x}], " + root + "}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0].issuer": "must be set for a keyless signer: the OIDC issuer of its certificate"}},
		{name: "a keyless signer without subject", pipeline: "verify: {signers: [{issuer: " + gha + "}], " + root + "}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0]": "a keyless signer needs subject (one exact identity"}},
		{name: "a keyless signer with subject and subjectRegexp", pipeline: "verify: {signers: [{issuer: " + gha + ", subject: x, subjectRegexp: '^x'}], " + root + "}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0]": "sets both subject and subjectRegexp: set exactly one"}},
		{name: "a subjectRegexp that does not compile", pipeline: "verify: {signers: [{issuer: " + gha + ", subjectRegexp: '^https://github.com/acme/(web'}], " + root + "}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0].subjectRegexp": "is not a Go regular expression: error parsing regexp: missing closing )"}},
		{name: "an unanchored subjectRegexp", pipeline: "verify: {signers: [{issuer: " + gha + ", subjectRegexp: 'https://github.com/acme/'}], " + root + "}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0].subjectRegexp": "must start with ^"}},
		{name: "KMS keys", pipeline: "sign: true\n    verify: {signers: [{key: 'awskms:///arn:aws:kms:eu-west-1:1:key/k'}, {key: 'gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k'}, {key: 'hashivault://k'}]}",
			want: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "awskms:///arn:aws:kms:eu-west-1:1:key/k"}, {Key: "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"}, {Key: "hashivault://k"}}}},
		{name: "a secret reference for a key", pipeline: "verify: {signers: [{key: 'env:CI_PUB'}]}",
			wantErr: map[string]string{"pipelines[0].verify.signers[0].key": `"env:CI_PUB" is a secret reference (env:NAME, file:/path), not a key reference`}},

		// The trusted root.
		{name: "a keyless signer without trusted root", pipeline: "verify: {signers: [{key: /ci.pub}, {issuer: " + gha + ", subject: x}]}",
			wantErr: map[string]string{"pipelines[0].verify.trustedRoot": "must be set: keyless signers (signers[1]) are checked against a sigstore trusted root, and promoter does not fetch the public-good one; set it to a sigstore trusted_root.json (cosign trusted-root create, or the public-good root from https://tuf-repo-cdn.sigstore.dev)"}},
		{name: "a trusted root without keyless signers", pipeline: "verify: {signers: [{key: /ci.pub}], " + root + "}",
			wantErr: map[string]string{"pipelines[0].verify.trustedRoot": "is read only by keyless signers (issuer with subject or subjectRegexp), and none is listed"}},

		// Attestations.
		{name: "attestations without signers", pipeline: "verify: {attestations: [{predicateType: 'https://slsa.dev/provenance/v1'}]}",
			wantErr: map[string]string{"pipelines[0].verify.attestations": "need signers: an attestation counts only when an accepted signer signed it"}},
		{name: "an attestation without predicate type", pipeline: "verify: {signers: [{key: /ci.pub}], attestations: [{builderID: x}]}",
			wantErr: map[string]string{"pipelines[0].verify.attestations[0].predicateType": "must be set: the in-toto predicate type"}},

		// The opt-out.
		{name: "acceptUnverified with signers", pipeline: "sign: true\n    verify: {signers: [{key: /ci.pub}], acceptUnverified: true}",
			wantErr: map[string]string{"pipelines[0].verify.acceptUnverified": "contradicts verify.signers"}},
		{name: "acceptUnverified on a pipeline that builds", pipeline: building + "sign: true\n    verify: {acceptUnverified: true}",
			wantErr: map[string]string{"pipelines[0].verify.acceptUnverified": "is for merge-only pipelines, and this one builds (source.repo is set)"}},
		{name: "acceptUnverified on a pipeline that does not sign", pipeline: "verify: {acceptUnverified: true}",
			wantErr: map[string]string{"pipelines[0].verify.acceptUnverified": "changes nothing on a pipeline that does not sign"}},
		{name: "a misspelt key", pipeline: "verify: {signer: [{key: /ci.pub}]}",
			wantErr: map[string]string{"pipelines[0].verify.signer": "unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, "auth: {insecureNoAuth: true}\nkeys: {cosign: /keys/cosign.key}\npipelines:\n  - "+base+tt.pipeline+"\n"+tt.extra)
			if len(tt.wantErr) > 0 {
				for path, msg := range wantProblems(t, err, tt.wantErr) {
					if strings.Contains(path, ".verify") && !strings.Contains(msg, "unknown key") && !strings.Contains(msg, "pipeline web") && !strings.Contains(msg, "pipeline api") {
						t.Errorf("problem at %s: %q does not name the pipeline", path, msg)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.DomainPipelines()[0].Verify); diff != "" {
				t.Errorf("Domain().Verify (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUnverifiedPipelines: the daemon warns at start about each pipeline that opted out.
func TestUnverifiedPipelines(t *testing.T) {
	tests := []struct {
		name      string
		pipelines string
		want      []string
	}{
		{name: "none", pipelines: "  - {name: web, platforms: [linux/amd64], staging: r.example/web, sign: true, verify: {signers: [{key: /ci.pub}]}}\n"},
		{name: "in configuration order", want: []string{"web", "batch"}, pipelines: "" +
			"  - {name: web, platforms: [linux/amd64], staging: r.example/web, sign: true, verify: {acceptUnverified: true}}\n" +
			"  - {name: api, platforms: [linux/amd64], staging: r.example/api, source: {repo: https://git.example/api.git}, sign: true}\n" +
			"  - {name: batch, platforms: [linux/amd64], staging: r.example/batch, sign: true, verify: {acceptUnverified: true}}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, "auth: {insecureNoAuth: true}\nkeys: {cosign: /keys/cosign.key}\npipelines:\n"+tt.pipelines)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.UnverifiedPipelines()); diff != "" {
				t.Errorf("UnverifiedPipelines (-want +got):\n%s", diff)
			}
		})
	}
}
