package events

import (
	"net/http"
	"strings"
	"testing"
)

// TestReceiversTable: every row of Receivers is served at its path under its name, and
// while its secret is unset it is disabled with an answer that names the configuration
// key of the row (what the daemon and the configuration read), so the key a decoder names
// cannot drift from the table.
func TestReceiversTable(t *testing.T) {
	names, paths := map[string]bool{}, map[string]bool{}
	for _, e := range Receivers {
		if names[e.Name] || paths[e.Path] {
			t.Errorf("receiver %s (%s): name or path listed twice", e.Name, e.Path)
		}
		names[e.Name], paths[e.Path] = true, true
		if (e.decode == nil) == (e.serve == nil) || e.Registry != (e.decode != nil) {
			t.Errorf("receiver %s: want a decoder for a registry receiver, a handler for a source one", e.Name)
		}
		if !strings.HasPrefix(e.SecretKey, "auth.") || e.Auth == "" {
			t.Errorf("receiver %s: secret key %q, auth %q; want an auth.* key and a kind", e.Name, e.SecretKey, e.Auth)
		}
	}
	disabled := newHarness(t, Secrets{})
	for _, e := range Receivers {
		t.Run(e.Name, func(t *testing.T) {
			got := disabled.post(t, e.Path, []byte(`{}`), http.Header{"Content-Type": {"application/json"}})
			if got.status != http.StatusUnauthorized && got.status != http.StatusNotFound {
				t.Fatalf("POST %s without its secret: got %d %s, want 401 or 404", e.Path, got.status, got.body)
			}
			if msg := got.errorMessage(t); !strings.Contains(msg, "set "+e.SecretKey) {
				t.Errorf("POST %s without its secret: got %q, want it to say to set %s", e.Path, msg, e.SecretKey)
			}
		})
	}
}
