package localregistry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/notifications"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

func start(t *testing.T, dir string, opts ...localregistry.Option) *localregistry.Registry {
	t.Helper()
	r, err := localregistry.Start(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func image(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestStartServesPushedImages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage")
	reg := start(t, dir)
	if reg.Dir != dir {
		t.Errorf("Dir is %q, want %q", reg.Dir, dir)
	}
	if !strings.HasPrefix(reg.Host, "127.0.0.1:") || reg.URL != "http://"+reg.Host {
		t.Errorf("Host %q, URL %q: want 127.0.0.1:PORT and http://127.0.0.1:PORT", reg.Host, reg.URL)
	}

	img := image(t)
	if err := remote.Write(ref(t, reg.Host+"/team/app:v1"), img); err != nil {
		t.Fatalf("pushing: %v", err)
	}
	got, err := remote.Image(ref(t, reg.Host+"/team/app:v1"))
	if err != nil {
		t.Fatalf("pulling: %v", err)
	}
	if g, w := digest(t, got), digest(t, img); g != w {
		t.Errorf("pulled %s, pushed %s", g, w)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Errorf("pulled %d layers, pushed 2", len(layers))
	}
	if _, err := os.Stat(filepath.Join(dir, "docker", "registry", "v2", "repositories", "team", "app")); err != nil {
		t.Errorf("repository is not stored under Dir: %v", err)
	}

	// A registry started again on the same dir and port serves what its predecessor stored.
	port, err := strconv.Atoi(strings.TrimPrefix(reg.Host, "127.0.0.1:"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("closing: %v", err)
	}
	again := start(t, dir, localregistry.WithPort(port))
	if again.Host != reg.Host {
		t.Errorf("restarted on %s, want %s", again.Host, reg.Host)
	}
	d, err := remote.Head(ref(t, again.Host+"/team/app:v1"))
	if err != nil {
		t.Fatalf("pulling after restart: %v", err)
	}
	if d.Digest != digest(t, img) {
		t.Errorf("after restart v1 is %s, want %s", d.Digest, digest(t, img))
	}

	// Deletes are enabled: tests delete tags and manifests to stage a registry that lost them.
	if err := remote.Delete(ref(t, again.Host+"/team/app@"+digest(t, img).String())); err != nil {
		t.Errorf("deleting by digest: %v", err)
	}
	if _, err := remote.Head(ref(t, again.Host+"/team/app@"+digest(t, img).String())); !isStatus(err, http.StatusNotFound) {
		t.Errorf("after delete got %v, want 404", err)
	}
}

func isStatus(err error, status int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == status
}

func TestWithBasicAuth(t *testing.T) {
	const user, password = "ci", "s3cret"
	reg := start(t, t.TempDir(), localregistry.WithBasicAuth(user, password))
	img := image(t)
	stored := reg.Host + "/team/app:stored"
	if err := remote.Write(ref(t, stored), img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatalf("pushing with the credentials: %v", err)
	}
	htpasswd := filepath.Join(reg.Dir, "htpasswd")
	if st, err := os.Stat(htpasswd); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("htpasswd file %s: %v, want it written with mode 0600", htpasswd, err)
	}

	tests := []struct {
		name string
		auth authn.Authenticator
		// wantStatus is the HTTP status of the push and of the pull; 0 means they succeed.
		wantStatus int
	}{
		{name: "anonymous", auth: authn.Anonymous, wantStatus: http.StatusUnauthorized},
		{name: "wrong password", auth: &authn.Basic{Username: user, Password: "nope"}, wantStatus: http.StatusUnauthorized},
		{name: "unknown user", auth: &authn.Basic{Username: "eve", Password: password}, wantStatus: http.StatusUnauthorized},
		{name: "credentials", auth: &authn.Basic{Username: user, Password: password}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				switch {
				case tt.wantStatus == 0 && err != nil:
					t.Errorf("%s: got %v, want success", op, err)
				case tt.wantStatus != 0 && !isStatus(err, tt.wantStatus):
					t.Errorf("%s: got %v, want HTTP %d", op, err, tt.wantStatus)
				}
			}
			check("push", remote.Write(ref(t, reg.Host+"/team/app:"+strings.ReplaceAll(tt.name, " ", "-")), img, remote.WithAuth(tt.auth)))
			got, err := remote.Head(ref(t, stored), remote.WithAuth(tt.auth))
			check("pull", err)
			if err == nil && got.Digest != digest(t, img) {
				t.Errorf("pulled %s, want %s", got.Digest, digest(t, img))
			}
		})
	}
}

// sink records the events a registry delivers and the Authorization header they carried.
type sink struct {
	mu     sync.Mutex
	events []notifications.Event
	auth   []string
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// notifications.Envelope holds go-events interfaces, which JSON cannot decode into.
	var env struct {
		Events []notifications.Event `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, env.Events...)
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.mu.Unlock()
}

// until waits for an event done reports true for and returns every event received so far.
func (s *sink) until(t *testing.T, done func(notifications.Event) bool) ([]notifications.Event, []string) {
	t.Helper()
	var events []notifications.Event
	var auth []string
	err := testenv.WaitFor(10*time.Second, func() error {
		s.mu.Lock()
		events, auth = slices.Clone(s.events), slices.Clone(s.auth)
		s.mu.Unlock()
		if !slices.ContainsFunc(events, done) {
			return fmt.Errorf("%d notifications, none the awaited one", len(events))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the awaited notification did not arrive within 10s: %v", err)
	}
	return events, auth
}

func TestNotifications(t *testing.T) {
	tests := []struct {
		name   string
		option func(url string, headers http.Header) localregistry.Option
		// want is the sorted set of "action kind" delivered, kind being blob or manifest.
		want []string
	}{
		{name: "WithNotify", option: localregistry.WithNotify, want: []string{"push manifest"}},
		{
			name: "WithNotifyAll", option: localregistry.WithNotifyAll,
			want: []string{"pull blob", "pull manifest", "push blob", "push manifest"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			srv := httptest.NewServer(s)
			defer srv.Close()
			reg := start(t, t.TempDir(), tt.option(srv.URL, http.Header{"Authorization": {"Bearer test"}}))

			img := image(t)
			if err := remote.Write(ref(t, reg.Host+"/team/app:v1"), img); err != nil {
				t.Fatal(err)
			}
			pulled, err := remote.Image(ref(t, reg.Host+"/team/app:v1"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pulled.RawConfigFile(); err != nil {
				t.Fatal(err)
			}
			// An endpoint delivers in order, so once the push of v2 arrives everything the
			// registry was going to send about the requests before it has arrived too.
			if err := remote.Tag(ref(t, reg.Host+"/team/app:v2").(name.Tag), img); err != nil {
				t.Fatal(err)
			}
			events, auth := s.until(t, func(e notifications.Event) bool { return e.Target.Tag == "v2" })

			var kinds, pushedTags []string
			for _, e := range events {
				kind := "manifest"
				if e.Target.MediaType == "application/octet-stream" {
					kind = "blob"
				}
				kinds = append(kinds, e.Action+" "+kind)
				if e.Action == "push" && kind == "manifest" {
					if e.Target.Repository != "team/app" || e.Target.Digest.String() != digest(t, img).String() {
						t.Errorf("manifest push of %s@%s, want team/app@%s", e.Target.Repository, e.Target.Digest, digest(t, img))
					}
					pushedTags = append(pushedTags, e.Target.Tag)
				}
			}
			slices.Sort(kinds)
			if diff := cmp.Diff(tt.want, slices.Compact(kinds)); diff != "" {
				t.Errorf("delivered events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"v1", "v2"}, pushedTags); diff != "" {
				t.Errorf("manifest pushes by tag (-want +got):\n%s", diff)
			}
			for _, a := range auth {
				if a != "Bearer test" {
					t.Errorf("delivery carried Authorization %q, want %q", a, "Bearer test")
				}
			}
		})
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		opts []localregistry.Option
	}{
		{name: "empty dir", dir: ""},
		{name: "negative port", dir: "x", opts: []localregistry.Option{localregistry.WithPort(-1)}},
		{name: "port too large", dir: "x", opts: []localregistry.Option{localregistry.WithPort(70000)}},
		{name: "relative notify url", dir: "x", opts: []localregistry.Option{localregistry.WithNotify("/v1/events", nil)}},
		{name: "notify-all without scheme", dir: "x", opts: []localregistry.Option{localregistry.WithNotifyAll("127.0.0.1:1/x", nil)}},
		{name: "empty user", dir: "x", opts: []localregistry.Option{localregistry.WithBasicAuth("", "p")}},
		{name: "user with colon", dir: "x", opts: []localregistry.Option{localregistry.WithBasicAuth("a:b", "p")}},
		{name: "empty password", dir: "x", opts: []localregistry.Option{localregistry.WithBasicAuth("a", "")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir != "" {
				dir = filepath.Join(t.TempDir(), dir)
			}
			r, err := localregistry.Start(context.Background(), dir, tt.opts...)
			if err == nil {
				r.Close()
			}
			if !errors.Is(err, localregistry.ErrInvalidOption) {
				t.Fatalf("got %v, want ErrInvalidOption", err)
			}
			if dir != "" {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("rejected options left %s behind (stat: %v)", dir, err)
				}
			}
		})
	}
}
