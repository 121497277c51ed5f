package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestRootlessBuildKitBuildsFromHTTPS runs rootless BuildKit as in
// TestRootlessBuildKitBuildsFromGit, but the repository is private and served over https by
// git http-backend with a certificate from a CA made for the test; the token reaches git
// as in the build Job, a file passed as `--secret id=GIT_AUTH_TOKEN,src=FILE`. With the
// token the build pushes an image whose RUN layer is read back. Until git trusts the CA
// (testenv's TrustInNewRepos says how, the build Job unchanged) the build fails on the
// certificate before any request; without the token the server refuses git, and BuildKit's
// error says so.
func TestRootlessBuildKitBuildsFromHTTPS(t *testing.T) {
	const token = "e2e-https-git-token-4b2e"
	reg := testenv.StartRegistry(t)
	gitsrv := testenv.StartGitServer(t)
	access := gitsrv.ServeHTTPS(t, token)

	base := reg.Host + "/base:busybox"
	testenv.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))
	_, sha := gitsrv.CreateRepo(t, "private", map[string]string{
		"Dockerfile": fmt.Sprintf("FROM %s\nRUN echo built > /built\n", base),
	})

	// git on this host, given the CA and the token's header as BuildKit builds it (source/
	// git/source.go, getAuthToken), reaches the repository: a build failure below is
	// BuildKit's.
	header := "Authorization: basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	cmd := exec.Command("git", "-c", "http.sslCAInfo="+access.CAFile, "-c", "http.extraHeader="+header,
		"ls-remote", access.URL("private"), "main")
	// Not os.Environ: GIT_SSL_CAINFO there would override -c http.sslCAInfo.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_TERMINAL_PROMPT=0"}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), sha) {
		t.Fatalf("git ls-remote %s: got %q (%v), want %s", access.URL("private"), out, err, sha)
	}

	// In order: git trusts the CA from the first case that wants it until the test ends.
	tests := []struct {
		name    string
		trusted bool // git trusts the CA
		token   bool // --secret id=GIT_AUTH_TOKEN
		// want is in buildctl's error; "" when the build succeeds.
		want string
		// Whether the server saw requests with the token, and without.
		wantAuthorized, wantRefused bool
	}{
		// curl (GnuTLS) rejects the certificate: no request reaches the server.
		{name: "untrusted CA", token: true,
			want: "fatal: unable to access '" + access.URL("private") + "/': server certificate verification failed"},
		{name: "token", trusted: true, token: true, wantAuthorized: true},
		// The server answers 401, and git may not ask for a user name.
		{name: "no token", trusted: true,
			want: "fatal: could not read Username for 'https://" + access.Host + "': terminal prompts disabled", wantRefused: true},
	}
	trusted := false
	for _, tc := range tests {
		switch {
		case tc.trusted && !trusted:
			access.TrustInNewRepos(t)
			trusted = true
		case !tc.trusted && trusted:
			t.Fatalf("%s: git already trusts the CA: put the untrusted cases first", tc.name)
		}
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			// A BuildKit per build: a cached checkout of the commit would let a build pass
			// without fetching it.
			bk := testenv.NewBuildKit(t, reg.Host)
			var args []string
			if tc.token {
				args = []string{"--secret", "id=GIT_AUTH_TOKEN,src=" + buildUserFile(t, bk, "git-token", []byte(token))}
			}
			image := fmt.Sprintf("%s/acme/app:%s-%s-amd64", reg.Host, sha, strings.ReplaceAll(tc.name, " ", "-"))
			authorized, refused := access.Authorized.Load(), access.Refused.Load()
			out, err := buildFromGit(t, bk, access.URL("private")+"#"+sha, image, args...)
			authorized, refused = access.Authorized.Load()-authorized, access.Refused.Load()-refused
			t.Logf("the git server saw %d authorized and %d refused requests", authorized, refused)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("build from %s: %v\n%s", access.URL("private"), err, out)
				}
				checkBuiltImage(t, image)
			} else {
				if err == nil {
					t.Fatalf("build from %s: succeeded, want it to fail with %q", access.URL("private"), tc.want)
				}
				got := buildctlError(out)
				t.Logf("buildctl's error:\n%s", got)
				if !strings.Contains(got, tc.want) {
					t.Errorf("buildctl's error: got %q, want it to contain %q", got, tc.want)
				}
			}
			if (authorized > 0) != tc.wantAuthorized || (refused > 0) != tc.wantRefused {
				t.Errorf("requests the git server authorized and refused: got %d and %d, want some: %t and %t",
					authorized, refused, tc.wantAuthorized, tc.wantRefused)
			}
		})
	}
}
