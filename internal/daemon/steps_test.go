package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestStartRefusesUnusableKeys: a daemon that could never sign or verify must say so at
// start, naming the key to set, not fail later on the first revision.
func TestStartRefusesUnusableKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := sign.GenerateKeyPair([]byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	key, pubKey := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	os.WriteFile(key, priv, 0o600)
	os.WriteFile(pubKey, pub, 0o644)
	t.Setenv("COSIGN_PASSWORD", "")

	// withPipeline is a configuration that validates but for what a case sets: one locally
	// built pipeline, signing, with one destination that requires a signature.
	withPipeline := func(edit func(c *config.Config)) *config.Config {
		c := config.Default()
		c.Auth.InsecureNoAuth = true
		c.Listen, c.Metrics, c.Status = "127.0.0.1:0", "", ""
		c.DataDir = t.TempDir()
		c.Pipelines = []config.Pipeline{{
			Name: "web", Source: config.Source{Repo: "https://git.example/web.git", Branch: "main"},
			Platforms: []string{"linux/amd64"}, Staging: "127.0.0.1:5000/web", Sign: true,
			ArchTag: types.DefaultArchTag,
			Build:   config.Build{Executor: "local", Dir: dir, Cache: config.BuildCache{Mode: builders.DefaultCacheMode}},
			Promote: []config.Destination{{To: "127.0.0.1:5001/web", RequireSignature: true}},
		}}
		edit(c)
		return c
	}
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte(unsignedToken), 0o600)
	badRoot := filepath.Join(dir, "trusted_root.json")
	os.WriteFile(badRoot, []byte("{}"), 0o600)
	keyless := func(tokenFile, trustedRoot string) func(c *config.Config) {
		return func(c *config.Config) {
			c.Sign = config.Sign{Format: "bundle", FulcioURL: "http://127.0.0.1:1", IdentityToken: tokenFile, TSAURL: "http://127.0.0.1:2", TrustedRoot: trustedRoot}
		}
	}
	cases := []struct {
		name    string
		edit    func(c *config.Config)
		wantErr error  // config.ErrInvalid when validation refuses it, nil when loading a key fails
		want    string // the key or file the message names, for the operator to fix
	}{
		{"keyless without its token", keyless(filepath.Join(dir, "nope"), badRoot), nil, "reading identity token"},
		{"keyless with an unreadable trusted root", keyless(token, badRoot), nil, "loading trusted root " + badRoot},
		{"keyless and a key", func(c *config.Config) {
			keyless(token, badRoot)(c)
			c.Keys = config.Keys{Cosign: key, Password: "right"}
		}, config.ErrInvalid, "keys.cosign: is set and so is keyless signing"},
		{"sign without a key", func(c *config.Config) {}, config.ErrInvalid, "keys.cosign"},
		{"wrong password", func(c *config.Config) { c.Keys = config.Keys{Cosign: key, Password: "wrong"} }, nil, "keys.cosign"},
		{"missing key file", func(c *config.Config) { c.Keys = config.Keys{Cosign: filepath.Join(dir, "nope.key")} }, nil, "keys.cosign"},
		{"gate without any key", func(c *config.Config) { c.Pipelines[0].Sign = false; c.Pipelines[0].Promote[0].RequireSignature = true }, config.ErrInvalid, "requireSignature"},
		{"unknown format", func(c *config.Config) { c.Keys = config.Keys{Cosign: key, Password: "right"}; c.Sign.Format = "pgp" }, config.ErrInvalid, "sign.format"},
		{"bad public key", func(c *config.Config) { c.Keys = config.Keys{Cosign: key, Password: "right", Public: []string{key}} }, nil, "keys.public[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Start(context.Background(), withPipeline(tc.edit))
			if err == nil {
				d.Stop()
			}
			if err == nil || errors.Is(err, config.ErrInvalid) != (tc.wantErr != nil) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error (%v) mentioning %q", err, tc.wantErr, tc.want)
			}
		})
	}
	ok := withPipeline(func(c *config.Config) { c.Keys = config.Keys{Cosign: key, Password: "right", Public: []string{pubKey}} })
	o, err := newOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, promoter, err := newSteps(context.Background(), ok, o)
	if err != nil || signer == nil || promoter == nil {
		t.Fatalf("valid keys: %v, signer %v, promoter %v", err, signer, promoter)
	}
}

// unsignedToken is a service-account token's shape (header.claims.signature) with the
// claims Fulcio reads; nothing here checks its signature.
const unsignedToken = "eyJhbGciOiJSUzI1NiJ9." +
	// {"iss":"https://kube.example","kubernetes.io":{"namespace":"promoter","serviceaccount":{"name":"promoter"}}}
	"eyJpc3MiOiJodHRwczovL2t1YmUuZXhhbXBsZSIsImt1YmVybmV0ZXMuaW8iOnsibmFtZXNwYWNlIjoicHJvbW90ZXIiLCJzZXJ2aWNlYWNjb3VudCI6eyJuYW1lIjoicHJvbW90ZXIifX19" +
	".c2ln"
