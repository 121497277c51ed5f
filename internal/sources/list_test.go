package sources

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPollWithoutGit: with no git on the daemon's PATH, a poll lists the branch head over
// git://, http (with a token) and ssh (GIT_SSH_COMMAND's key and known hosts), from the
// real git daemon, git http-backend and sshd, all started while git was on PATH.
func TestPollWithoutGit(t *testing.T) {
	const token = "s3cret-git-token"
	srv := testenv.StartGitServer(t)
	repo, head := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	private := srv.ServeHTTP(t, token)
	sshd := srv.ServeSSH(t)
	t.Setenv("GIT_SSH_COMMAND", sshd.GitSSHCommand())
	t.Setenv("SSH_AUTH_SOCK", "")

	t.Setenv("PATH", t.TempDir())
	if _, err := exec.LookPath("git"); err == nil {
		t.Fatal("git is still on PATH")
	}
	pipelines := []types.Pipeline{
		polled("git", repo, "main", time.Minute),
		polled("http", private.URL("app"), "main", time.Minute),
		polled("ssh", sshd.URL("app"), "main", time.Minute),
	}
	pub := &bustest.Recorder{}
	p := newPoller(t, pub, pipelines, WithToken("http", token))
	var want []types.SourceChanged
	for _, pl := range pipelines {
		if got, err := p.Poll(context.Background(), pl.Name); got != OutcomeNew || err != nil {
			t.Errorf("poll of %s: got %s (%v), want %s", pl.Source.Repo, got, err, OutcomeNew)
		}
		want = append(want, changed(pl.Name, pl.Source.Repo, "main", head))
	}
	if _, stored := published(t, pub); !cmp.Equal(want, stored) {
		t.Errorf("stored (-want +got):\n%s", cmp.Diff(want, stored))
	}
}

// TestPollOverHTTPS: an https repository whose certificate a private CA signed is polled
// when GIT_SSL_CAINFO names the CA, as git did, and refused otherwise.
func TestPollOverHTTPS(t *testing.T) {
	const token = "s3cret-git-token"
	srv := testenv.StartGitServer(t)
	_, head := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	h := srv.ServeHTTPS(t, token)
	tests := []struct {
		name       string
		env        map[string]string
		want       Outcome
		wantErrMsg string
	}{
		{name: "the CA in GIT_SSL_CAINFO", env: map[string]string{"GIT_SSL_CAINFO": h.CAFile}, want: OutcomeNew},
		{name: "no CA", env: map[string]string{"GIT_SSL_CAINFO": ""},
			want: OutcomeFailed, wantErrMsg: "certificate signed by unknown authority"},
		{name: "GIT_SSL_CAINFO missing", env: map[string]string{"GIT_SSL_CAINFO": filepath.Join(t.TempDir(), "ca.pem")},
			want: OutcomeFailed, wantErrMsg: "reading the CA certificates of the daemon's GIT_SSL_CAINFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			pub := &bustest.Recorder{}
			p := newPoller(t, pub, []types.Pipeline{polled("app", h.URL("app"), "main", time.Minute)}, WithToken("app", token))
			got, err := p.Poll(context.Background(), "app")
			if got != tt.want || (tt.wantErrMsg == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErrMsg)) {
				t.Errorf("got %s (%v), want %s and an error containing %q", got, err, tt.want, tt.wantErrMsg)
			}
			if _, stored := published(t, pub); tt.want == OutcomeNew && !cmp.Equal(stored, []types.SourceChanged{changed("app", h.URL("app"), "main", head)}) {
				t.Errorf("stored %+v, want the head %s", stored, head)
			}
		})
	}
}

// TestPollOverSSH: a poll of an ssh repository logs in as ssh would with the daemon's
// setup, GIT_SSH_COMMAND's or ~/.ssh's, and trusts the server's host key as ssh's
// StrictHostKeyChecking says.
func TestPollOverSSH(t *testing.T) {
	srv := testenv.StartGitServer(t)
	_, head := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	a := srv.ServeSSH(t)
	dir := t.TempDir()
	otherKey := filepath.Join(dir, "other_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	encryptedKey := filepath.Join(dir, "encrypted_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", encryptedKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	otherPub, err := os.ReadFile(otherKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	// sshd's address, known with the other key: a changed host key.
	changedHosts := writeFile(t, dir, "changed_hosts", strings.Fields(a.KnownHosts)[0]+" "+strings.Join(strings.Fields(string(otherPub))[:2], " ")+"\n")
	emptyHosts := writeFile(t, dir, "empty_hosts", "")
	home := t.TempDir() // ~/.ssh with the key and the known host
	writeFile(t, filepath.Join(home, ".ssh"), "id_ed25519", string(a.PrivateKey))
	writeFile(t, filepath.Join(home, ".ssh"), "known_hosts", a.KnownHosts+"\n")
	bare := "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i "

	tests := []struct {
		name       string
		repo       string
		branch     string // default main
		home       string // $HOME; default an empty directory
		command    string // GIT_SSH_COMMAND
		want       Outcome
		wantErrMsg string
		wantHosts  string // the file accept-new adds sshd's key to
	}{
		{name: "GIT_SSH_COMMAND, an ssh:// URL", repo: a.URL("app"), command: a.GitSSHCommand(), want: OutcomeNew},
		{name: "GIT_SSH_COMMAND, an scp-style URL", repo: a.SCPURL("app"), command: a.GitSSHCommand(), want: OutcomeNew},
		{name: "~/.ssh", repo: a.URL("app"), home: home, want: OutcomeNew},
		{name: "~/.ssh, an scp-style URL", repo: a.SCPURL("app"), home: home, want: OutcomeNew},
		{name: "the branch is missing", repo: a.URL("app"), branch: "release", command: a.GitSSHCommand(), want: OutcomeMissing,
			wantErrMsg: "has no branch release"},
		{name: "the repository is missing", repo: a.URL("nope"), command: a.GitSSHCommand(), want: OutcomeFailed,
			wantErrMsg: "/nope.git refs/heads/main: "},
		{name: "no key", repo: a.URL("app"), want: OutcomeFailed,
			wantErrMsg: "no ssh key to log in to 127.0.0.1 with ("},
		{name: "an encrypted key", repo: a.URL("app"), command: bare + encryptedKey + " -o UserKnownHostsFile=" + a.KnownHostsFile,
			want: OutcomeFailed, wantErrMsg: encryptedKey + ": encrypted with a passphrase, which a poll cannot ask for"},
		{name: "a key the server refuses", repo: a.URL("app"), command: bare + otherKey + " -o UserKnownHostsFile=" + a.KnownHostsFile,
			want: OutcomeFailed, wantErrMsg: "the git server refused the daemon's ssh key (" + otherKey + "; "},
		{name: "an unknown host", repo: a.URL("app"), command: bare + a.PrivateKeyFile + " -o UserKnownHostsFile=" + emptyHosts,
			want: OutcomeFailed, wantErrMsg: "ssh: handshake failed: host key verification failed: no host key of [127.0.0.1]:"},
		{name: "a changed host key", repo: a.URL("app"), command: bare + a.PrivateKeyFile + " -o UserKnownHostsFile=" + changedHosts,
			want: OutcomeFailed, wantErrMsg: "is not the one known (" + changedHosts + ":1): has the server's key changed"},
		{name: "a changed host key, StrictHostKeyChecking=no", repo: a.URL("app"),
			command: bare + a.PrivateKeyFile + " -o UserKnownHostsFile=" + changedHosts + " -o StrictHostKeyChecking=no", want: OutcomeNew},
		{name: "a changed host key, StrictHostKeyChecking=accept-new", repo: a.URL("app"),
			command: bare + a.PrivateKeyFile + " -o UserKnownHostsFile=" + changedHosts + " -o StrictHostKeyChecking=accept-new",
			want:    OutcomeFailed, wantErrMsg: "has the server's key changed"},
		{name: "an unknown host, StrictHostKeyChecking=no, UserKnownHostsFile=none", repo: a.URL("app"),
			command: bare + a.PrivateKeyFile + " -o UserKnownHostsFile=none -o StrictHostKeyChecking=no", want: OutcomeNew},
		{name: "an unknown host, StrictHostKeyChecking=accept-new", repo: a.URL("app"),
			command:   bare + a.PrivateKeyFile + " -o UserKnownHostsFile=" + filepath.Join(dir, "new", "known_hosts") + " -o StrictHostKeyChecking=accept-new",
			want:      OutcomeNew,
			wantHosts: filepath.Join(dir, "new", "known_hosts")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.home == "" {
				tt.home = t.TempDir()
			}
			t.Setenv("HOME", tt.home)
			t.Setenv("GIT_SSH_COMMAND", tt.command)
			t.Setenv("SSH_AUTH_SOCK", "")
			branch := tt.branch
			if branch == "" {
				branch = "main"
			}
			pub := &bustest.Recorder{}
			p := newPoller(t, pub, []types.Pipeline{polled("app", tt.repo, branch, time.Minute)})
			got, err := p.Poll(context.Background(), "app")
			t.Logf("poll: %s (%v)", got, err)
			if got != tt.want || (tt.wantErrMsg == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErrMsg)) {
				t.Errorf("got %s (%v), want %s and an error containing %q", got, err, tt.want, tt.wantErrMsg)
			}
			if tt.want == OutcomeMissing && !errors.Is(err, ErrBranchNotFound) {
				t.Errorf("got error %v, want %v", err, ErrBranchNotFound)
			}
			if _, stored := published(t, pub); tt.want == OutcomeNew && !cmp.Equal(stored, []types.SourceChanged{changed("app", tt.repo, "main", head)}) {
				t.Errorf("stored %+v, want the head %s", stored, head)
			}
			if tt.wantHosts != "" {
				hosts, err := os.ReadFile(tt.wantHosts)
				if key := strings.Join(strings.Fields(a.KnownHosts)[1:], " "); err != nil || !strings.Contains(string(hosts), "[127.0.0.1]:"+strings.Split(a.Host, ":")[1]+" "+key) {
					t.Errorf("%s: got %q (%v), want sshd's key %s", tt.wantHosts, hosts, err, key)
				}
				// The next poll trusts the key it added.
				t.Setenv("GIT_SSH_COMMAND", bare+a.PrivateKeyFile+" -o UserKnownHostsFile="+tt.wantHosts)
				p := newPoller(t, &bustest.Recorder{}, []types.Pipeline{polled("app", tt.repo, branch, time.Minute)})
				if got, err := p.Poll(context.Background(), "app"); got != OutcomeNew {
					t.Errorf("a poll with the added key: got %s (%v), want %s", got, err, OutcomeNew)
				}
			}
		})
	}
}

// writeFile writes content to dir/name, mode 0600, creating dir, and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
