package builders

import (
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/types"
)

// Tails of buildctl's plain progress output, as the e2e tests see them from real BuildKit.
const (
	runFailed = `#6 [build-amd64 2/2] RUN echo "make: *** No rule to make target 'all'." >&2; exit 1
#6 0.081 make: *** No rule to make target 'all'.
#6 ERROR: process "/bin/sh -c echo \"make: *** No rule to make target 'all'.\" >&2; exit 1" did not complete successfully: exit code: 1
------
 > [build-amd64 2/2] RUN echo "make: *** No rule to make target 'all'." >&2; exit 1:
0.081 make: *** No rule to make target 'all'.
------
Dockerfile:4
--------------------
   2 |     ARG TARGETPLATFORM
   3 | >>> RUN echo "make: *** No rule to make target 'all'." >&2; exit 1
--------------------
error: failed to solve: process "/bin/sh -c echo \"make: *** No rule to make target 'all'.\" >&2; exit 1" did not complete successfully: exit code: 1
`
	noCredentials = `#2 [internal] load git source http://git.example/acme/web.git#3f2c1a9d
#2 ERROR: failed to fetch remote http://git.example/acme/web.git: git stderr:
------
 > [internal] load git source http://git.example/acme/web.git#3f2c1a9d:
0.004 Initialized empty Git repository in /home/user/.local/share/buildkit/runc-overlayfs/snapshots/snapshots/2/fs/
0.006 fatal: Not a valid object name 3f2c1a9d^{commit}
0.012 fatal: could not read Username for 'http://git.example': terminal prompts disabled
------
error: failed to solve: failed to read dockerfile: failed to fetch remote http://git.example/acme/web.git: git stderr:
`
	missingFile   = "error: failed to stat /run/promoter/git/token: stat /run/promoter/git/token: no such file or directory\n"
	missingSecret = "error: failed to stat /run/promoter/secrets/1/npmrc: stat /run/promoter/secrets/1/npmrc: no such file or directory\n"
)

func TestFailureCause(t *testing.T) {
	req := func(repo, gitSecret string) types.BuildRequest {
		return types.BuildRequest{
			Pipeline: "web", SourceRepo: repo, GitSecret: gitSecret,
			Secrets: []types.BuildSecret{{ID: "CI_JOB_TOKEN", Secret: "ci-token", Key: "token"}, {ID: "npmrc", Secret: "npm", Key: ".npmrc"}},
		}
	}
	https, ssh := "https://git.example/acme/web.git", "git@git.example:acme/web.git"
	tests := []struct {
		name   string
		req    types.BuildRequest
		output string
		want   []string
		absent []string
	}{
		{"RUN step fails", req(https, ""), runFailed, []string{
			`error: failed to solve: process "/bin/sh -c echo`, "did not complete successfully: exit code: 1",
			"; [build-amd64 2/2] RUN echo", ": make: *** No rule to make target 'all'.",
		}, []string{"Dockerfile:4", "0.081"}},
		{"private repository without credentials", req(https, ""), noCredentials, []string{
			`the git server of https://git.example/acme/web.git asked for credentials: for a private repository, set build.gitSecret of pipeline web to a Secret in namespace builds with key "token": error: failed to solve`,
			"could not read Username",
		}, []string{"Initialized empty", "Not a valid object name"}},
		{"ssh repository without credentials asks for the key", req(ssh, ""), "error: failed to solve: git@git.example: Permission denied (publickey).\n",
			[]string{`with key "ssh-privatekey"`}, nil},
		{"credentials refused", req(https, "web-git"), noCredentials,
			[]string{`refused the credentials in Secret "web-git" (build.gitSecret of pipeline web)`}, nil},
		{"git Secret missing", req(https, "web-git"), missingFile,
			[]string{`the git credentials Secret "web-git" (build.gitSecret of pipeline web) is missing from namespace builds or has no key "token": error: failed to stat /run/promoter/git/token`}, nil},
		{"ssh Secret missing names its key", req(ssh, "web-git"), strings.ReplaceAll(missingFile, "token", "ssh-privatekey"),
			[]string{`has no key "ssh-privatekey"`}, nil},
		{"build secret missing", req(https, ""), missingSecret,
			[]string{`build secret npmrc: Secret "npm" (build.secrets[1] of pipeline web) is missing from namespace builds or has no key ".npmrc"`}, nil},
		{"no error line: the last line", req(https, ""), "#1 building\nKilled\n", []string{"Killed"}, []string{"building"}},
		// As a real node's pod logs them (e2e TestClusterBuildJob's variants).
		{"seccomp RuntimeDefault", req(https, ""),
			"[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted\nsh: can't kill pid 9: No such process\n",
			[]string{"needs seccompProfile (and appArmorProfile) type Unconfined: [rootlesskit:parent] error: failed to start the child"}, []string{"can't kill"}},
		{"no process sandbox flag", req(https, ""),
			`error: failed to solve: process "/bin/sh -c echo built > /built" did not complete successfully: runc run failed: error mounting "proc" to rootfs at "/proc": mount proc:/proc (via /proc/self/fd/6), flags: 0xe: operation not permitted` + "\n",
			[]string{"set BUILDKITD_FLAGS=--oci-worker-no-process-sandbox: error: failed to solve"}, nil},
		{"newuidmap without capabilities", req(https, ""),
			"[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 12 [0 1000 1 1 100000 65536] failed: newuidmap: write to uid_map failed: Operation not permitted\n",
			[]string{"need file capabilities"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := failureCause(tc.req, "builds", tc.output)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("cause does not contain %q:\n%s", w, got)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("cause contains %q:\n%s", a, got)
				}
			}
		})
	}
	if got := failureCause(req(https, ""), "builds", "\n\n"); got != "" {
		t.Errorf("empty output: got %q, want no cause", got)
	}
}

func TestGitUsesSSH(t *testing.T) {
	for repo, want := range map[string]bool{
		"ssh://git@git.example:2222/acme/web.git": true,
		"git@git.example:acme/web.git":            true,
		"https://git.example/acme/web.git":        false,
		"http://user@git.example:8080/web.git":    false,
		"git://git.example/acme/web.git":          false,
	} {
		if got := gitUsesSSH(repo); got != want {
			t.Errorf("gitUsesSSH(%q) = %v, want %v", repo, got, want)
		}
	}
}
