package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// TestStartSigstore signs a blob in-process with a service account's token through the
// private Fulcio and timestamp authority, and verifies it offline against the trusted root
// the cosign CLI wrote: the identity is the service account's, from the apiserver's issuer.
func TestStartSigstore(t *testing.T) {
	kube := StartKube(t, WithPublicIssuer())
	s := StartSigstore(t, kube)
	if s.Issuer != kube.URL {
		t.Fatalf("issuer %s, want the apiserver's URL %s", s.Issuer, kube.URL)
	}
	token, err := os.ReadFile(s.IdentityToken(t, "ci-system", "ci"))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("signed through a private sigstore\n")
	key, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := sign.Bundle(&sign.PlainData{Data: data}, key, sign.BundleOptions{
		CertificateProvider:        sign.NewFulcio(&sign.FulcioOptions{BaseURL: s.FulcioURL}),
		CertificateProviderOptions: &sign.CertificateProviderOptions{IDToken: strings.TrimSpace(string(token))},
		TimestampAuthorities:       []*sign.TimestampAuthority{sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{URL: s.TSAURL + "/api/v1/timestamp"})},
		Context:                    context.Background(),
	})
	if err != nil {
		t.Fatalf("signing with the ci token: %v", err)
	}
	tr, err := root.NewTrustedRootFromPath(s.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.NewVerifier(tr, verify.WithSignedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		subject string
		// wantMismatch: verifying fails with sigstore-go's typed
		// *verify.ErrNoMatchingCertificateIdentity (errors.As; it has no sentinel).
		wantMismatch bool
	}{
		{name: "the signer's identity", subject: s.Identity("ci-system", "ci")},
		{name: "another service account", subject: s.Identity("ci-system", "intruder"), wantMismatch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := verify.NewShortCertificateIdentity(s.Issuer, "", tt.subject, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(&sgbundle.Bundle{Bundle: pb}, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(data)), verify.WithCertificateIdentity(id)))
			var mismatch *verify.ErrNoMatchingCertificateIdentity
			switch {
			case !tt.wantMismatch && err != nil:
				t.Fatalf("verify as %s: got error %v, want none", tt.subject, err)
			case tt.wantMismatch && !errors.As(err, &mismatch):
				t.Fatalf("verify as %s: got error %v, want ErrNoMatchingCertificateIdentity", tt.subject, err)
			}
		})
	}
}
