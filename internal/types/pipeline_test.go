package types

import (
	"errors"
	"strings"
	"testing"
)

const (
	gha     = "https://token.actions.githubusercontent.com"
	ghaFlow = "https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main"
)

// wantPolicyProblems checks that err is nil when want is empty, and otherwise a
// *PolicyError (ErrInvalidPolicy) with a problem at each field of want, its message
// containing want's text, and at no other field.
func wantPolicyProblems(t *testing.T, err error, want map[string]string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	var perr *PolicyError
	if !errors.Is(err, ErrInvalidPolicy) || !errors.As(err, &perr) {
		t.Fatalf("got %v, want a *PolicyError (ErrInvalidPolicy)", err)
	}
	got := map[string]string{}
	for _, p := range perr.Problems {
		got[p.Field] = p.Msg
	}
	if len(got) != len(perr.Problems) || len(got) != len(want) {
		t.Errorf("got problems %q, want one at each of %q", perr.Problems, want)
	}
	for field, msg := range want {
		if m, ok := got[field]; !ok || !strings.Contains(m, msg) {
			t.Errorf("problem at %q: got %q, want it to contain %q", field, m, msg)
		}
	}
}

func TestTrustedSignerValidate(t *testing.T) {
	tests := []struct {
		name string
		s    TrustedSigner
		want map[string]string // field → part of its message; none when valid
	}{
		{name: "a PEM file", s: TrustedSigner{Key: "/etc/promoter/ci.pub"}},
		{name: "env://", s: TrustedSigner{Key: "env://CI_PUB"}},
		{name: "k8s://", s: TrustedSigner{Key: "k8s://ci/cosign"}},
		{name: "issuer and subject", s: TrustedSigner{Issuer: gha, Subject: ghaFlow}},
		{name: "issuer and an anchored regexp", s: TrustedSigner{Issuer: gha, SubjectRegexp: `^https://github\.com/acme/`}},

		{name: "nothing", s: TrustedSigner{},
			want: map[string]string{"": "a signer is a public key (key: a PEM file, env://NAME or k8s://namespace/name) or a keyless identity (issuer, with subject or subjectRegexp); this one sets neither key nor issuer"}},
		{name: "key and issuer", s: TrustedSigner{Key: "/ci.pub", Issuer: gha, Subject: "x"},
			want: map[string]string{"": "sets key and a keyless identity (issuer, subject, subjectRegexp), but a signer is exactly one of the two"}},
		{name: "key and subject", s: TrustedSigner{Key: "/ci.pub", Subject: "x"}, want: map[string]string{"": "sets key and a keyless identity"}},
		{name: "key and subjectRegexp", s: TrustedSigner{Key: "/ci.pub", SubjectRegexp: "^x"}, want: map[string]string{"": "sets key and a keyless identity"}},
		{name: "no issuer", s: TrustedSigner{Subject: ghaFlow},
			want: map[string]string{"issuer": "must be set for a keyless signer: the OIDC issuer of its certificate"}},
		{name: "no issuer, no subject", s: TrustedSigner{SubjectRegexp: "web"},
			want: map[string]string{"issuer": "must be set for a keyless signer", "subjectRegexp": `"web" must start with ^`}},
		{name: "no subject", s: TrustedSigner{Issuer: gha},
			want: map[string]string{"": "a keyless signer needs subject (one exact identity, e.g. https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main) or subjectRegexp"}},
		{name: "subject and regexp", s: TrustedSigner{Issuer: gha, Subject: "x", SubjectRegexp: "^x"},
			want: map[string]string{"": "sets both subject and subjectRegexp: set exactly one"}},
		{name: "a regexp that does not compile", s: TrustedSigner{Issuer: gha, SubjectRegexp: "^https://github.com/acme/(web"},
			want: map[string]string{"subjectRegexp": `"^https://github.com/acme/(web" is not a Go regular expression: error parsing regexp: missing closing )`}},
		{name: "an unanchored regexp", s: TrustedSigner{Issuer: gha, SubjectRegexp: "https://github.com/acme/"},
			want: map[string]string{"subjectRegexp": "must start with ^: it is matched anywhere in the identity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantPolicyProblems(t, tt.s.Validate(), tt.want)
		})
	}
}

func TestVerifyPolicyValidate(t *testing.T) {
	const root = "/etc/promoter/trusted_root.json"
	key := TrustedSigner{Key: "/etc/promoter/ci.pub"}
	keyless := TrustedSigner{Issuer: gha, Subject: ghaFlow}
	slsa := RequiredAttestation{PredicateType: "https://slsa.dev/provenance/v1"}
	tests := []struct {
		name string
		v    VerifyPolicy
		want map[string]string // field → part of its message; none when valid
	}{
		{name: "no policy", v: VerifyPolicy{}},
		{name: "the opt-out", v: VerifyPolicy{AcceptUnverified: true}},
		{name: "a key", v: VerifyPolicy{Signers: []TrustedSigner{key}}},
		{name: "keyless with its trusted root", v: VerifyPolicy{Signers: []TrustedSigner{keyless}, TrustedRoot: root}},
		{name: "a trusted root only keys ignore", v: VerifyPolicy{Signers: []TrustedSigner{key}, TrustedRoot: root}},
		{name: "every field", v: VerifyPolicy{Signers: []TrustedSigner{key, keyless}, TrustedRoot: root,
			Attestations: []RequiredAttestation{{PredicateType: slsa.PredicateType, BuilderID: "https://github.com/acme/builder"}, {PredicateType: "https://spdx.dev/Document"}}}},

		{name: "a signer's problems under its index", v: VerifyPolicy{Signers: []TrustedSigner{key, {Subject: "x"}, {Key: "hashivault://k"}, {}}, TrustedRoot: root},
			want: map[string]string{"signers[1].issuer": "must be set for a keyless signer", "signers[3]": "this one sets neither key nor issuer"}},
		{name: "keyless without trusted root", v: VerifyPolicy{Signers: []TrustedSigner{key, keyless, keyless}},
			want: map[string]string{"trustedRoot": "must be set: keyless signers (signers[1], signers[2]) are checked against a sigstore trusted root, and promoter does not fetch the public-good one; set it to a sigstore trusted_root.json"}},
		{name: "an invalid keyless signer still needs the trusted root", v: VerifyPolicy{Signers: []TrustedSigner{{Issuer: gha}}},
			want: map[string]string{"signers[0]": "a keyless signer needs subject", "trustedRoot": "keyless signers (signers[0])"}},
		{name: "a signer that names nothing is not keyless", v: VerifyPolicy{Signers: []TrustedSigner{{}}},
			want: map[string]string{"signers[0]": "sets neither key nor issuer"}},
		{name: "attestations without signers", v: VerifyPolicy{Attestations: []RequiredAttestation{slsa}},
			want: map[string]string{"attestations": "need signers: an attestation counts only when an accepted signer signed it"}},
		{name: "an attestation without predicate type", v: VerifyPolicy{Signers: []TrustedSigner{key}, Attestations: []RequiredAttestation{slsa, {BuilderID: "x"}}},
			want: map[string]string{"attestations[1].predicateType": "must be set: the in-toto predicate type the image must carry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantPolicyProblems(t, tt.v.Validate(), tt.want)
		})
	}
}

// TestPolicyErrorMessage: the error names each problem's field, in order, on one line.
func TestPolicyErrorMessage(t *testing.T) {
	err := VerifyPolicy{Signers: []TrustedSigner{{Issuer: gha}}, Attestations: []RequiredAttestation{{}}}.Validate()
	want := "signers[0]: a keyless signer needs subject"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "; trustedRoot: must be set") != 1 ||
		!strings.HasSuffix(err.Error(), "; attestations[0].predicateType: must be set: the in-toto predicate type the image must carry, e.g. https://slsa.dev/provenance/v1") {
		t.Errorf("got %q, want %q, then the trusted root's and the attestation's problems", err, want)
	}
	if got := (TrustedSigner{}).Validate().Error(); !strings.HasPrefix(got, "a signer is a public key") {
		t.Errorf("a signer's own problem: got %q, want no field before it", got)
	}
}

func TestParseExecutor(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Executor
		wantErr error
	}{
		{"", "", ErrUnknownExecutor},
		{"kubernetes", ExecutorKubernetes, nil},
		{"local", ExecutorLocal, nil},
		{"Local", "", ErrUnknownExecutor},
		{"docker", "", ErrUnknownExecutor},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseExecutor(tc.in)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("ParseExecutor(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
