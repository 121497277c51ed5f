package sources

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestCredentials: what a poll of each kind of URL presents, from its token and the
// daemon's environment.
func TestCredentials(t *testing.T) {
	tests := []struct {
		name    string
		repo    string
		token   string
		env     map[string]string
		want    git.ListOptions
		wantErr error  // the rule broken
		wantMsg string // part of the message, which says what to fix
	}{
		{name: "https with a token", repo: "https://git.example:8443/acme/app.git", token: "t0k",
			want: git.ListOptions{Auth: &githttp.BasicAuth{Username: "x-access-token", Password: "t0k"}}},
		{name: "http with a token", repo: "http://127.0.0.1:3000/app.git", token: "t0k",
			env:  map[string]string{"GIT_SSL_NO_VERIFY": "1"}, // https only
			want: git.ListOptions{Auth: &githttp.BasicAuth{Username: "x-access-token", Password: "t0k"}}},
		{name: "https without a token", repo: "https://git.example/app.git"},
		{name: "GIT_SSL_NO_VERIFY, set empty", repo: "https://git.example/app.git", env: map[string]string{"GIT_SSL_NO_VERIFY": ""},
			want: git.ListOptions{InsecureSkipTLS: true}},
		{name: "git://", repo: "git://git.example/app.git"},
		{name: "a token for ssh", repo: "git@github.com:acme/app.git", token: "t0k",
			wantErr: ErrRepoURL, wantMsg: "a source token is sent to http(s) repositories only, and git@github.com:acme/app.git is not one"},
		{name: "a token for git://", repo: "git://git.example/app.git", token: "t0k",
			wantErr: ErrRepoURL, wantMsg: "a source token is sent to http(s) repositories only, and git://git.example/app.git is not one"},
		{name: "a local path", repo: "/srv/git/app.git", wantErr: ErrRepoURL, wantMsg: "/srv/git/app.git is a path on the daemon's machine"},
		{name: "file://", repo: "file:///srv/git/app.git", wantErr: ErrRepoURL, wantMsg: "file:///srv/git/app.git is a path on the daemon's machine"},
		{name: "another scheme", repo: "ftp://git.example/app.git", wantErr: ErrRepoURL, wantMsg: "source.poll lists git://, http(s)://, ssh:// and scp-style URLs, not ftp://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GIT_SSL_CAINFO", "")
			unsetenv(t, "GIT_SSL_NO_VERIFY")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var opts []Option
			if tt.token != "" {
				opts = append(opts, WithToken("app", tt.token))
			}
			p := newPoller(t, &bustest.Recorder{}, []types.Pipeline{polled("app", tt.repo, "main", time.Minute)}, opts...)
			got, err := p.credentials(context.Background(), p.targets["app"])
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("got error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.release()
			if diff := cmp.Diff(tt.want, got.opts); diff != "" {
				t.Errorf("list options (-want +got):\n%s", diff)
			}
		})
	}
}
