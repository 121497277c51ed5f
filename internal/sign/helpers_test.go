package sign_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// pushed is a merged index as the merge step leaves it: two platform images and a
// BuildKit attestation manifest (platform unknown/unknown) as children.
type pushed struct {
	repo        string            // host/path
	tag         string            // repo:tag
	index       string            // sha256:...
	children    map[string]string // platform → digest
	attestation string            // digest of the unknown/unknown child
}

func (p pushed) at(d string) string { return p.repo + "@" + d }

// pushIndex pushes a fresh index to repo (host/path) under tag "v1".
func pushIndex(t *testing.T, repo string) pushed {
	t.Helper()
	p := pushed{repo: repo, tag: repo + ":v1", children: map[string]string{}}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var first v1.Hash
	for _, plat := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img := platformImage(t, plat)
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if first == (v1.Hash{}) {
			first = d
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
		p.children[plat.String()] = d.String()
	}
	att, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	att = mutate.MediaType(att, types.OCIManifestSchema1)
	ad, err := att.Digest()
	if err != nil {
		t.Fatal(err)
	}
	p.attestation = ad.String()
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
		Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{
			"vnd.docker.reference.type":   "attestation-manifest",
			"vnd.docker.reference.digest": first.String(),
		},
	}})
	ref, err := name.ParseReference(p.tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("pushing index %s: %v", p.tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	p.index = d.String()
	return p
}

func platformImage(t *testing.T, plat v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// keys is a key pair written as cosign.key / cosign.pub in a temp dir.
type keys struct {
	dir, priv, pub  string
	privPEM, pubPEM []byte
	password        []byte
	signer          signature.SignerVerifier
	verifier        signature.Verifier
}

// newKeys returns the key pair of the given slot ("a", "b", ...), written to a fresh temp
// dir. Pairs are generated once per test binary: cosign's key encryption is scrypt, which
// costs seconds on a busy machine.
func newKeys(t *testing.T, slot string) keys {
	t.Helper()
	gen, _ := keyCache.LoadOrStore(slot, sync.OnceValues(func() (keys, error) {
		k := keys{password: []byte("correct horse")}
		var err error
		if k.privPEM, k.pubPEM, err = sign.GenerateKeyPair(k.password); err != nil {
			return k, err
		}
		ctx := context.Background()
		if k.signer, err = sign.LoadSigner(ctx, "env://"+envKey(slot, k.privPEM), k.password, nil); err != nil {
			return k, fmt.Errorf("LoadSigner(GenerateKeyPair key): %w", err)
		}
		if k.verifier, err = sign.LoadVerifier(ctx, "env://"+envKey(slot+"_PUB", k.pubPEM), nil); err != nil {
			return k, fmt.Errorf("LoadVerifier(GenerateKeyPair key): %w", err)
		}
		return k, nil
	}))
	k, err := gen.(func() (keys, error))()
	if err != nil {
		t.Fatal(err)
	}
	k.dir = t.TempDir()
	k.priv, k.pub = filepath.Join(k.dir, "cosign.key"), filepath.Join(k.dir, "cosign.pub")
	if err := os.WriteFile(k.priv, k.privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.pub, k.pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

var keyCache sync.Map // slot → func() (keys, error)

// envKey puts a key in a process environment variable, which exercises env:// loading.
func envKey(slot string, pem []byte) string {
	name := "PROMOTER_SIGN_TEST_KEY_" + strings.ToUpper(slot)
	os.Setenv(name, string(pem))
	return name
}

func signer(k keys, f sign.Format) *sign.Signer {
	s, err := sign.NewSigner(k.signer, registry.Client{}, sign.WithFormat(f))
	if err != nil {
		panic(err)
	}
	return s
}

func verifier(k keys) *sign.Verifier {
	v, err := sign.NewVerifier(registry.Client{}, k.verifier)
	if err != nil {
		panic(err)
	}
	return v
}

// cosignCmd runs the real cosign CLI offline: HOME in a temp dir (no TUF cache), and every
// non-loopback connection sent to a dead proxy, so a call to a transparency log, CA or
// TUF mirror fails loudly instead of passing by luck.
func cosignCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Tool(t, "cosign")
	// A cosign call that waits on something (a network it must not reach) fails the test
	// with its output instead of hanging the package until go test's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), cosignTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HOME="+home, "XDG_CACHE_HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost",
		"COSIGN_PASSWORD=correct horse", "COSIGN_YES=true")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("cosign %s did not finish in %s: %w", strings.Join(args, " "), cosignTimeout, err)
	}
	return strings.TrimSpace(string(out)), err
}

// cosignTimeout bounds one offline cosign call; they take about a second.
const cosignTimeout = 2 * time.Minute
