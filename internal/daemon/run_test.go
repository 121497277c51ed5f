package daemon

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/metrics"
)

// TestRegistryReceiverTokens: each registry receiver's token alone lets the daemon start
// (the other receivers stay disabled), reaches that receiver, and none at all is refused
// with the keys to set.
func TestRegistryReceiverTokens(t *testing.T) {
	tests := []struct {
		key  string
		set  func(*config.Auth)
		want events.Secrets
	}{
		{"auth.registryToken", func(a *config.Auth) { a.RegistryToken = "t" }, events.Secrets{"registry": "t"}},
		{"auth.harbor.token", func(a *config.Auth) { a.Harbor.Token = "t" }, events.Secrets{"harbor": "t"}},
		{"auth.cloudevents.token", func(a *config.Auth) { a.CloudEvents.Token = "t" }, events.Secrets{"cloudevents": "t"}},
		{"auth.acr.token", func(a *config.Auth) { a.ACR.Token = "t" }, events.Secrets{"acr": "t"}},
		{"auth.gar.token", func(a *config.Auth) { a.GAR.Token = "t" }, events.Secrets{"gar": "t"}},
		{"auth.ecr.token", func(a *config.Auth) { a.ECR.Token = "t" }, events.Secrets{"ecr": "t"}},
		{"auth.quay.token", func(a *config.Auth) { a.Quay.Token = "t" }, events.Secrets{"quay": "t"}},
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			var cfg config.Config
			tc.set(&cfg.Auth)
			if err := checkAuth(&cfg, log); err != nil {
				t.Errorf("checkAuth with only %s: %v, want nil", tc.key, err)
			}
			got, err := webhookSecrets(cfg.Auth)
			if diff := cmp.Diff(tc.want, got); err != nil || diff != "" {
				t.Errorf("webhookSecrets: %v, (-want +got):\n%s", err, diff)
			}
		})
	}
	err := checkAuth(&config.Config{}, log)
	if err == nil {
		t.Fatal("checkAuth without any token: nil, want an error")
	}
	for _, tc := range tests {
		if !strings.Contains(err.Error(), tc.key) {
			t.Errorf("checkAuth without any token: %q does not name %s", err, tc.key)
		}
	}
}

// TestOpsHandlerPprof: the runtime profiles are served on the ops listener only when the
// key pprof is set.
func TestOpsHandlerPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(opsHandler(metrics.Discard(), nil, on))
		for path, want := range map[string]int{"/debug/pprof/": http.StatusNotFound, "/debug/pprof/heap?debug=1": http.StatusNotFound, "/metrics": http.StatusOK} {
			if on && path != "/metrics" {
				want = http.StatusOK
			}
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("pprof %v: GET %s = %s, want %d", on, path, resp.Status, want)
			}
		}
		srv.Close()
	}
}
