package sign_test

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	intotov1 "github.com/in-toto/attestation/go/v1"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// fakeSigstore is a throwaway Sigstore (sigstore-go's VirtualSigstore: a Fulcio-style CA,
// a timestamp authority and a transparency log) whose trusted root is written as a
// trusted_root.json, the file a policy names.
type fakeSigstore struct {
	vs   *ca.VirtualSigstore
	root string // path of its trusted_root.json
	// tsa timestamps the signatures when set, instead of vs: a certificate of one CA
	// with a timestamp another trusted root vouches for.
	tsa *ca.VirtualSigstore
}

// timestampedBy is s with its signatures timestamped by tsa's timestamp authority.
func (s fakeSigstore) timestampedBy(tsa fakeSigstore) fakeSigstore {
	s.tsa = tsa.vs
	return s
}

func newSigstore(t *testing.T) fakeSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	// VirtualSigstore files its log under the hex of the log id but keeps that hex as the
	// id's bytes, where a trusted root holds the raw id: serialised as it is, the log
	// would come back under another id and no log entry would verify.
	logs := map[string]*root.TransparencyLog{}
	for id, l := range vs.RekorLogs() {
		raw, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		fixed := *l
		fixed.ID = raw
		logs[id] = &fixed
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, vs.TimestampingAuthorities(), logs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return fakeSigstore{vs: vs, root: path}
}

// timeProof is how a keyless bundle proves when it was signed, which its short-lived
// certificate needs.
type timeProof int

const (
	stamped  timeProof = iota // an RFC 3161 timestamp of the timestamp authority
	logged                    // a transparency log entry (inclusion promise and proof)
	unproven                  // neither
)

// bundle signs an in-toto statement about digest with a fresh certificate for subject
// from issuer, and returns the v0.3 sigstore bundle that cosign's keyless signing
// writes (certificate as verification material, DSSE envelope as content).
func (s fakeSigstore) bundle(t *testing.T, subject, issuer, digest, predicateType string, predicate map[string]any, p timeProof) []byte {
	t.Helper()
	body := statement(t, digest, predicateType, predicate)
	te, err := s.vs.AttestAtTime(subject, issuer, body, time.Now().Add(5*time.Minute), p == logged)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := te.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := te.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	env := sc.EnvelopeContent().RawEnvelope()
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: body, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	switch p {
	case stamped:
		ts, err := te.Timestamps()
		if err != nil {
			t.Fatal(err)
		}
		if s.tsa != nil {
			if ts[0], err = s.tsa.TimestampResponse(sig); err != nil {
				t.Fatal(err)
			}
		}
		pb.VerificationMaterial.TimestampVerificationData = &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts[0]}},
		}
	case logged:
		entries, err := te.TlogEntries()
		if err != nil {
			t.Fatal(err)
		}
		pb.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{s.logEntry(t, entries[0])}
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// logEntry is e as a bundle carries it, with the inclusion promise (the log's signed
// entry timestamp) VirtualSigstore keeps to itself.
func (s fakeSigstore) logEntry(t *testing.T, e *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	set, err := s.vs.RekorSignPayload(tlog.RekorPayload{
		Body:           e.Body(),
		IntegratedTime: e.IntegratedTime().Unix(),
		LogIndex:       e.LogIndex(),
		LogID:          hex.EncodeToString([]byte(e.LogKeyID())),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle := proto.Clone(e.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// statement is the in-toto statement JSON about digest, as cosign signs it (the
// signature's predicate is empty).
func statement(t *testing.T, digest, predicateType string, predicate map[string]any) []byte {
	t.Helper()
	alg, hexDigest, _ := strings.Cut(digest, ":")
	pred, err := structpb.NewStruct(predicate)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := protojson.Marshal(&intotov1.Statement{
		Type:          intotov1.StatementTypeUri,
		Subject:       []*intotov1.ResourceDescriptor{{Digest: map[string]string{alg: hexDigest}}},
		PredicateType: predicateType,
		Predicate:     pred,
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// pushBundle pushes a bundle as a referrer of img, as cosign does (annotated with the
// predicate type).
func pushBundle(t *testing.T, img archImage, raw []byte, predicateType string) {
	t.Helper()
	if err := ociremote.WriteAttestationNewBundleFormat(img.ref, raw, predicateType); err != nil {
		t.Fatalf("pushing a bundle for %s: %v", img, err)
	}
}

// keylessSigned signs img as cosign sign does without a key: a statement of the cosign
// signature predicate type, about digest ("" for img's own).
func keylessSigned(s fakeSigstore, subject, issuer, digest string, p timeProof) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		if digest == "" {
			digest = img.digest
		}
		pushBundle(t, img, s.bundle(t, subject, issuer, digest, ctypes.CosignSignPredicateType, nil, p), ctypes.CosignSignPredicateType)
		return img
	}
}

const (
	testIssuer  = "https://issuer.acme.dev"
	testSubject = "ci@acme.dev"
)

func TestPolicyKeyless(t *testing.T) {
	reg := testenv.StartRegistry(t)
	s, other := newSigstore(t), newSigstore(t)
	a, b := newKeys(t, "a"), newKeys(t, "b")
	ci := types.TrustedSigner{Issuer: testIssuer, Subject: testSubject}
	ciRegexp := types.TrustedSigner{Issuer: testIssuer, SubjectRegexp: `^ci(-[a-z]+)?@acme\.dev$`}
	elsewhere := strings.Repeat("e", 64)
	tests := []struct {
		name      string
		signers   []types.TrustedSigner
		noRoot    bool
		setup     func(t *testing.T, img archImage) archImage
		want      string   // Evidence.Signer, when accepted
		wantFound []string // what the refusal says, when not
	}{{
		name:    "issuer and subject, timestamped",
		signers: []types.TrustedSigner{ci},
		setup:   keylessSigned(s, testSubject, testIssuer, "", stamped),
		want:    "ci@acme.dev from https://issuer.acme.dev",
	}, {
		name:    "issuer and subject, in the transparency log",
		signers: []types.TrustedSigner{ci},
		setup:   keylessSigned(s, testSubject, testIssuer, "", logged),
		want:    "ci@acme.dev from https://issuer.acme.dev",
	}, {
		name:    "subject regexp",
		signers: []types.TrustedSigner{ciRegexp},
		setup:   keylessSigned(s, "ci-nightly@acme.dev", testIssuer, "", stamped),
		want:    "ci-nightly@acme.dev from https://issuer.acme.dev",
	}, {
		name:      "another subject",
		signers:   []types.TrustedSigner{ci, ciRegexp},
		setup:     keylessSigned(s, "dev@acme.dev", testIssuer, "", stamped),
		wantFound: []string{"certificate identity dev@acme.dev from https://issuer.acme.dev does not match"},
	}, {
		name:      "another issuer",
		signers:   []types.TrustedSigner{ci},
		setup:     keylessSigned(s, testSubject, "https://accounts.example.com", "", stamped),
		wantFound: []string{"certificate identity ci@acme.dev from https://accounts.example.com does not match"},
	}, {
		name:      "certificate from another CA",
		signers:   []types.TrustedSigner{ci},
		setup:     keylessSigned(other.timestampedBy(s), testSubject, testIssuer, "", stamped),
		wantFound: []string{"certificate of ci@acme.dev from https://issuer.acme.dev does not verify against the trusted root", "leaf certificate"},
	}, {
		name:      "timestamp from another authority",
		signers:   []types.TrustedSigner{ci},
		setup:     keylessSigned(s.timestampedBy(other), testSubject, testIssuer, "", stamped),
		wantFound: []string{"certificate of ci@acme.dev from https://issuer.acme.dev does not verify against the trusted root", "timestamps"},
	}, {
		name:      "no proof of time",
		signers:   []types.TrustedSigner{ci},
		setup:     keylessSigned(s, testSubject, testIssuer, "", unproven),
		wantFound: []string{"does not verify against the trusted root", "timestamps"},
	}, {
		name:      "statement about another digest",
		signers:   []types.TrustedSigner{ci},
		setup:     keylessSigned(s, testSubject, testIssuer, "sha256:"+elsewhere, stamped),
		wantFound: []string{"a signature by ci@acme.dev from https://issuer.acme.dev names sha256:" + elsewhere, "copied from another image"},
	}, {
		name:    "keys and identities: the identity signed",
		signers: []types.TrustedSigner{{Key: a.pub}, ci},
		setup:   keylessSigned(s, testSubject, testIssuer, "", stamped),
		want:    "ci@acme.dev from https://issuer.acme.dev",
	}, {
		name:    "keys and identities: a key signed",
		signers: []types.TrustedSigner{ci, {Key: a.pub}},
		setup:   signedWith(a, sign.FormatBundle),
		want:    keyName(t, a),
	}, {
		name:      "identities only, another key signed",
		signers:   []types.TrustedSigner{ci},
		setup:     signedWith(b, sign.FormatBundle),
		wantFound: []string{"signed by key " + fingerprint(t, b) + ", not in the policy"},
	}, {
		name:      "keys only, an identity signed",
		signers:   []types.TrustedSigner{{Key: a.pub}},
		noRoot:    true,
		setup:     keylessSigned(s, testSubject, testIssuer, "", stamped),
		wantFound: []string{"signed by certificate identity ci@acme.dev from https://issuer.acme.dev; the policy has no keyless signer"},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.setup(t, pushArch(t, reg.Host+"/ci/keyless-"+string(rune('a'+i))))
			p := types.VerifyPolicy{Signers: tt.signers, TrustedRoot: s.root}
			if tt.noRoot {
				p.TrustedRoot = ""
			}
			checkVerify(t, p, img, tt.want, "", tt.wantFound)
		})
	}
}
