package sign_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/cosign/v3/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

func TestLoadPlainPEMKey(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath, pubPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sv, err := sign.LoadSigner(ctx, keyPath, nil, nil)
	if err != nil {
		t.Fatalf("LoadSigner(PEM): %v", err)
	}
	v, err := sign.LoadVerifier(ctx, pubPath, nil)
	if err != nil {
		t.Fatalf("LoadVerifier(PEM): %v", err)
	}
	roundTrip(t, sv, v)
}

func TestLoadKeyErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The message names the reference or what to give instead: that is its feature, so
	// it is checked next to the sentinel.
	tests := []struct {
		name, ref string
		wantErr   error
		wantMsg   string
	}{
		{"missing file", filepath.Join(dir, "nope.key"), fs.ErrNotExist, "nope.key"},
		{"not PEM", garbage, sign.ErrNoPEM, "want a cosign key"},
		{"unset env", "env://PROMOTER_SIGN_TEST_UNSET", sign.ErrKeyRef, "PROMOTER_SIGN_TEST_UNSET is not set"},
		{"k8s without client", "k8s://ns/name", sign.ErrNoKubeClient, "set KUBECONFIG"},
		{"bad k8s ref", "k8s://name-only", sign.ErrKeyRef, "want k8s://namespace/name"},
		{"empty", "", sign.ErrKeyRef, "want a key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sign.LoadSigner(ctx, tt.ref, nil, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadSigner(%q): got %v, want %v", tt.ref, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadSigner(%q): got %q, want it to say %q", tt.ref, err, tt.wantMsg)
			}
		})
	}
}

func TestKubernetesSecretKeys(t *testing.T) {
	kube := testenv.StartKube(t)
	k := newKeys(t, "a")
	ctx := context.Background()
	if _, err := kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "signing"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The secret `cosign generate-key-pair k8s://signing/promoter-key` would create.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "promoter-key", Namespace: "signing"},
		Data: map[string][]byte{
			"cosign.key":      k.privPEM,
			"cosign.password": k.password,
			"cosign.pub":      k.pubPEM,
		},
	}
	if _, err := kube.Client.CoreV1().Secrets("signing").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The secret's password wins over a wrong one given by the caller.
	sv, err := sign.LoadSigner(ctx, "k8s://signing/promoter-key", []byte("ignored"), kube.Client)
	if err != nil {
		t.Fatalf("LoadSigner(k8s://): %v", err)
	}
	v, err := sign.LoadVerifier(ctx, "k8s://signing/promoter-key", kube.Client)
	if err != nil {
		t.Fatalf("LoadVerifier(k8s://): %v", err)
	}
	roundTrip(t, sv, v)
	roundTrip(t, sv, k.verifier) // the same key as the file's

	if _, err := sign.LoadSigner(ctx, "k8s://signing/absent", nil, kube.Client); err == nil || !strings.Contains(err.Error(), "k8s://signing/absent") {
		t.Errorf("LoadSigner of a missing secret: got %v, want an error naming it", err)
	}
}

// roundTrip signs a message with sv and checks v accepts it and rejects another.
func roundTrip(t *testing.T, sv interface {
	SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error)
}, v signature.Verifier) {
	t.Helper()
	msg := []byte("promoter")
	sig, err := sv.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		t.Errorf("signature does not verify with the loaded public key: %v", err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader([]byte("other"))); err == nil {
		t.Error("signature verifies for another message")
	}
}

// TestKeysMatchCosign holds the key formats GenerateKeyPair writes and LoadSigner reads to
// cosign's library (linked by this test only, not by promoter): each side loads what the
// other generates, their signatures verify across, a wrong password fails in both, and an
// ed25519 key is loaded as ED25519ph, as cosign loads it.
func TestKeysMatchCosign(t *testing.T) {
	ctx := context.Background()
	password := []byte("correct horse")
	ours, oursPub, err := sign.GenerateKeyPair(password)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		priv, pub []byte
	}{
		{name: "promoter's key pair", priv: ours, pub: oursPub},
		{name: "cosign's key pair", priv: theirs.PrivateBytes, pub: theirs.PublicBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if block, _ := pem.Decode(tc.priv); block == nil || block.Type != cosign.SigstorePrivateKeyPemType {
				t.Fatalf("private key is not a %q PEM block:\n%s", cosign.SigstorePrivateKeyPemType, tc.priv)
			}
			dir := t.TempDir()
			keyPath, pubPath := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
			if err := os.WriteFile(keyPath, tc.priv, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(pubPath, tc.pub, 0o600); err != nil {
				t.Fatal(err)
			}
			promoterSV, err := sign.LoadSigner(ctx, keyPath, password, nil)
			if err != nil {
				t.Fatalf("LoadSigner: %v", err)
			}
			cosignSV, err := cosign.LoadPrivateKey(tc.priv, password, nil)
			if err != nil {
				t.Fatalf("cosign.LoadPrivateKey: %v", err)
			}
			v, err := sign.LoadVerifier(ctx, pubPath, nil)
			if err != nil {
				t.Fatalf("LoadVerifier: %v", err)
			}
			roundTrip(t, promoterSV, cosignSV)
			roundTrip(t, cosignSV, promoterSV)
			roundTrip(t, cosignSV, v)

			if _, err := sign.LoadSigner(ctx, keyPath, []byte("wrong"), nil); err == nil {
				t.Error("LoadSigner with a wrong password succeeded")
			}
			if _, err := cosign.LoadPrivateKey(tc.priv, []byte("wrong"), nil); err == nil {
				t.Error("cosign.LoadPrivateKey with a wrong password succeeded")
			}
		})
	}

	t.Run("ed25519 is ED25519ph", func(t *testing.T) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "ed.pem")
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		sv, err := sign.LoadSigner(ctx, path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := signature.LoadDefaultSignerVerifier(priv, *cosign.GetDefaultLoadOptions(nil)...)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprintf("%T", sv), fmt.Sprintf("%T", want); got != want {
			t.Errorf("an ed25519 key loads as %s, cosign loads it as %s", got, want)
		}
	})
}
