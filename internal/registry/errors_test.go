package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case strings.HasSuffix(r.URL.Path, "/manifests/there"):
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
			w.Header().Set("Content-Length", "2")
			w.WriteHeader(http.StatusOK)
		case strings.HasSuffix(r.URL.Path, "/manifests/absent"):
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	c := Client{Retry: &RetryPolicy{MaxAttempts: 1}}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		tag        string
		want       string
		wantStatus int // the registry's refusal; 0: no error
	}{
		{tag: "there", want: "sha256:" + strings.Repeat("a", 64)},
		{tag: "absent"},
		{tag: "denied", wantStatus: http.StatusForbidden},
	} {
		ref, err := c.ParseReference(host + "/acme/app:" + tc.tag)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Resolve(context.Background(), ref)
		if got != tc.want || (err != nil) != (tc.wantStatus != 0) {
			t.Errorf("Resolve(%s) = %q, %v; want %q, status %d", tc.tag, got, err, tc.want, tc.wantStatus)
		}
		if err != nil && (IsNotFound(err) || !IsStatus(err, tc.wantStatus)) {
			t.Errorf("%s: IsNotFound %v, IsStatus(%d) %v for %v", tc.tag, IsNotFound(err), tc.wantStatus, IsStatus(err, tc.wantStatus), err)
		}
	}
	if IsNotFound(nil) || IsStatus(context.Canceled, http.StatusNotFound) {
		t.Error("a nil or non-registry error counts as a status")
	}
}
