package events

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestRegistryNotificationsMatchTestdata captures notifications from a real distribution
// registry and checks that testdata/registry/*.json still has their shape (action, media
// type, tag or not, fields present). With PROMOTER_UPDATE_TESTDATA=1 it rewrites the files
// instead: they are never written by hand.
func TestRegistryNotificationsMatchTestdata(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	defer sink.Close()
	reg := testenv.StartRegistry(t, localregistry.WithNotifyAll(sink.URL, http.Header{"Authorization": {"Bearer capture"}}))

	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Push the per-arch image by tag, the same image by digest, an index by tag, then pull.
	tagRef, _ := name.ParseReference(reg.Host + "/acme/web:abc123-amd64")
	must(t, remote.Write(tagRef, img))
	d, _ := img.Digest()
	other, _ := random.Image(256, 1)
	od, _ := other.Digest()
	byDigest, _ := name.ParseReference(reg.Host + "/acme/web@" + od.String())
	must(t, remote.Write(byDigest, other))
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	idxRef, _ := name.ParseReference(reg.Host + "/acme/web:abc123")
	must(t, remote.WriteIndex(idxRef, idx))
	pullRef, _ := name.ParseReference(reg.Host + "/acme/web@" + d.String())
	_, err = remote.Get(pullRef)
	must(t, err)

	// Wait for the registry's queue to deliver, then sort bodies into files by what they carry.
	want := map[string]func(event) bool{
		"push-by-tag.json": func(e event) bool { return e.Action == "push" && e.Target.Tag == "abc123-amd64" },
		"push-by-digest.json": func(e event) bool {
			return e.Action == "push" && e.Target.Digest.String() == od.String() && e.Target.Tag == ""
		},
		"push-index.json": func(e event) bool { return e.Action == "push" && e.Target.Tag == "abc123" },
		"blob-push.json": func(e event) bool {
			return e.Action == "push" && e.Target.MediaType == "application/octet-stream"
		},
		"pull.json": func(e event) bool { return e.Action == "pull" },
	}
	found := map[string][]byte{}
	// A file still missing after the wait is reported below, by name.
	_ = testenv.WaitFor(10*time.Second, func() error {
		mu.Lock()
		for _, b := range bodies {
			var env envelope
			if json.Unmarshal(b, &env) != nil || len(env.Events) == 0 {
				continue
			}
			for file, match := range want {
				if _, ok := found[file]; !ok && match(env.Events[0]) {
					found[file] = b
				}
			}
		}
		mu.Unlock()
		if len(found) < len(want) {
			return fmt.Errorf("%d of %d kinds of notification captured", len(found), len(want))
		}
		return nil
	})
	for file := range want {
		b, ok := found[file]
		if !ok {
			t.Errorf("no notification captured for %s", file)
			continue
		}
		path := filepath.Join("testdata", "registry", file)
		if os.Getenv("PROMOTER_UPDATE_TESTDATA") != "" {
			must(t, os.WriteFile(path, b, 0o644))
			continue
		}
		stored, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (regenerate with PROMOTER_UPDATE_TESTDATA=1)", err)
		}
		if got, want := shape(t, b), shape(t, stored); got != want {
			t.Errorf("%s: the registry now sends %s, testdata has %s (regenerate with PROMOTER_UPDATE_TESTDATA=1)", file, got, want)
		}
	}
}

// shape summarises the first event of an envelope without its ids, digests and times.
func shape(t *testing.T, body []byte) string {
	t.Helper()
	var raw struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	must(t, json.Unmarshal(body, &raw))
	var env envelope
	must(t, json.Unmarshal(body, &env))
	e := env.Events[0]
	keys := make([]string, 0, len(raw.Events[0]))
	for k := range raw.Events[0] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return fmt.Sprintf("action=%s mediaType=%s tagged=%v keys=%v", e.Action, e.Target.MediaType, e.Target.Tag != "", keys)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
