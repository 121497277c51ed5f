package config

import (
	"slices"
	"testing"

	"github.com/promoter-dev/promoter/internal/events"
)

// TestReceiverSecrets: the secret of every webhook receiver (events.Receivers) is a key of
// the configuration, read from the file and the environment, and checked by validation at
// its own path.
func TestReceiverSecrets(t *testing.T) {
	keys := AllKeys()
	for _, e := range events.Receivers {
		t.Run(e.Name, func(t *testing.T) {
			if !slices.Contains(keys, e.SecretKey) {
				t.Fatalf("%s is not a configuration key (a field of config.Auth)", e.SecretKey)
			}
			t.Setenv(EnvName(e.SecretKey), "env:TEST_UNSET_RECEIVER_SECRET")
			_, err := Load(Input{})
			wantProblems(t, err, map[string]string{e.SecretKey: "environment variable TEST_UNSET_RECEIVER_SECRET is not set"})

			t.Setenv(EnvName(e.SecretKey), "t0ken")
			c, err := Load(Input{})
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := c.Auth.Secret(e.SecretKey); !ok || s != "t0ken" {
				t.Errorf("Auth.Secret(%q) = %q, %v; want the value of %s", e.SecretKey, s, ok, EnvName(e.SecretKey))
			}
		})
	}
	for _, key := range []string{"auth.insecureNoAuth", "auth.github", "auth.harbor.nope", "registryToken", "keys.password"} {
		if s, ok := (Auth{}).Secret(key); ok {
			t.Errorf("Auth.Secret(%q) = %q, true; want no secret", key, s)
		}
	}
}
