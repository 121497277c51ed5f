package testenv

import (
	"context"
	"crypto"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	localkms "github.com/nsmithuk/local-kms/src"
	lkmsconfig "github.com/nsmithuk/local-kms/src/config"
	lkmsdata "github.com/nsmithuk/local-kms/src/data"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws" // awskms://
)

// KMS is an AWS KMS on loopback: local-kms (github.com/nsmithuk/local-kms, an
// implementation of AWS KMS's JSON protocol, ECDSA P-256 signing included) served from
// the test process behind TLS, since sigstore's awskms provider always dials https.
// StartKMS points the AWS SDK of this process and of every process it starts (the cosign
// CLI, promoter serve) at it through the environment.
type KMS struct {
	// Host is the endpoint's 127.0.0.1:PORT, as a key reference names it:
	// awskms://HOST/alias/NAME.
	Host string
	// CABundle is the PEM file of the certificate the endpoint serves (AWS_CA_BUNDLE).
	CABundle string
}

// localKMSOnce sets local-kms's process-wide account and region.
var localKMSOnce sync.Once

// StartKMS starts an empty KMS and sets, for the rest of the test, AWS_CA_BUNDLE, static
// credentials and a region, as a workload would get them. It uses t.Setenv, so the test
// must not be parallel.
func StartKMS(t testing.TB) *KMS {
	t.Helper()
	localKMSOnce.Do(func() {
		lkmsconfig.AWSAccountId = "111122223333"
		lkmsconfig.AWSRegion = "eu-west-2"
	})
	dir := t.TempDir()
	db := lkmsdata.NewDatabase(filepath.Join(dir, "db"))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localkms.HandleRequest(w, r, db)
	}))
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_CA_BUNDLE":         ca,
		"AWS_ACCESS_KEY_ID":     "AKIAPROMOTERTEST",
		"AWS_SECRET_ACCESS_KEY": "promoter-test-secret",
		"AWS_REGION":            lkmsconfig.AWSRegion,
		// Nothing from the machine's own AWS setup may answer instead.
		"AWS_CONFIG_FILE":             filepath.Join(dir, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "no-credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	return &KMS{Host: srv.Listener.Addr().String(), CABundle: ca}
}

// Ref is the reference of the key aliased name: awskms://HOST/alias/NAME.
func (k *KMS) Ref(alias string) string { return "awskms://" + k.Host + "/alias/" + alias }

// CreateKey creates an ECDSA P-256 signing key aliased name, as `cosign generate-key-pair
// --kms` does, and returns its reference and its public key in PEM.
func (k *KMS) CreateKey(t testing.TB, alias string) (ref string, pub []byte) {
	t.Helper()
	ref = k.Ref(alias)
	sv, err := kms.Get(context.Background(), ref, crypto.SHA256)
	if err != nil {
		t.Fatalf("opening KMS key %s: %v", ref, err)
	}
	key, err := sv.CreateKey(context.Background(), sv.DefaultAlgorithm())
	if err != nil {
		t.Fatalf("creating KMS key %s: %v", ref, err)
	}
	if pub, err = cryptoutils.MarshalPublicKeyToPEM(key); err != nil {
		t.Fatal(err)
	}
	return ref, pub
}
