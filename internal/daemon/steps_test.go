package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/sign"
)

// TestStepsRefuseToStartWithoutUsableKeys: a daemon that could never sign or verify must
// say so at start, naming the key to set, not fail later on the first revision.
func TestStepsRefuseToStartWithoutUsableKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := sign.GenerateKeyPair([]byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	key, pubKey := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	os.WriteFile(key, priv, 0o600)
	os.WriteFile(pubKey, pub, 0o644)
	t.Setenv("COSIGN_PASSWORD", "")

	signing := []config.Pipeline{{Name: "web", Sign: true}}
	gated := []config.Pipeline{{Name: "web", Promote: []config.Destination{{To: "r.example/web", RequireSignature: true}}}}
	cases := []struct {
		name string
		cfg  config.Config
		want string
	}{
		{"sign without a key", config.Config{Pipelines: signing}, "keys.cosign is not set"},
		{"wrong password", config.Config{Pipelines: signing, Keys: config.Keys{Cosign: key, Password: "wrong"}}, "keys.cosign"},
		{"missing key file", config.Config{Pipelines: signing, Keys: config.Keys{Cosign: filepath.Join(dir, "nope.key")}}, "keys.cosign"},
		{"gate without any key", config.Config{Pipelines: gated}, "requireSignature"},
		{"unknown format", config.Config{Pipelines: signing, Keys: config.Keys{Cosign: key, Password: "right"}, Sign: config.Sign{Format: "pgp"}}, "sign.format"},
		{"bad public key", config.Config{Pipelines: gated, Keys: config.Keys{Public: key}}, "keys.public"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSteps(context.Background(), &tc.cfg, defaults())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	ok := config.Config{Pipelines: append(signing, gated...), Keys: config.Keys{Cosign: key, Password: "right", Public: pubKey},
		Promote: config.Default().Promote}
	st, err := newSteps(context.Background(), &ok, defaults())
	if err != nil || st.sign == nil || st.promote == nil {
		t.Fatalf("valid keys: %v %+v", err, st)
	}
}
