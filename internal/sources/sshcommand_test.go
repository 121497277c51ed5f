package sources

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadSSHSetup(t *testing.T) {
	const home = "/home/promoter"
	defaults := sshSettings{
		identities:       []string{home + "/.ssh/id_rsa", home + "/.ssh/id_ecdsa", home + "/.ssh/id_ed25519"},
		userKnownHosts:   []string{home + "/.ssh/known_hosts", home + "/.ssh/known_hosts2"},
		globalKnownHosts: []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"},
		strict:           strictYes,
	}
	with := func(change func(*sshSettings)) sshSettings {
		s := defaults
		change(&s)
		return s
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    sshSettings
		wantErr error  // the rule broken
		wantMsg string // part of the message, which says what to fix
	}{
		{name: "ssh's defaults", want: defaults},
		{name: "the agent", env: map[string]string{"SSH_AUTH_SOCK": "/run/agent.sock"},
			want: with(func(s *sshSettings) { s.agent = "/run/agent.sock" })},
		{name: "the test harness's command",
			env: map[string]string{"GIT_SSH_COMMAND": "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i /keys/id -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/keys/known_hosts"},
			want: with(func(s *sshSettings) {
				s.identities, s.identitiesOnly, s.userKnownHosts = []string{"/keys/id"}, true, []string{"/keys/known_hosts"}
			})},
		{name: "GIT_SSH is ssh", env: map[string]string{"GIT_SSH": "/usr/bin/ssh"}, want: defaults},
		{name: "GIT_SSH_COMMAND wins over GIT_SSH", env: map[string]string{"GIT_SSH_COMMAND": "ssh -q", "GIT_SSH": "/usr/local/bin/my-ssh"}, want: defaults},
		{name: "joined flags and values, quotes, variables and ~",
			env: map[string]string{
				"KEYS":            "/run/keys",
				"GIT_SSH_COMMAND": `/usr/bin/ssh -qTi"$KEYS/deploy key" -i ~/.ssh/other -oUserKnownHostsFile='~/a  /etc/b' -o "GlobalKnownHostsFile none" -l git -o User=ignored -o StrictHostKeyChecking=accept-new -o StrictHostKeyChecking=yes`,
			},
			want: with(func(s *sshSettings) {
				s.identities = []string{"/run/keys/deploy key", home + "/.ssh/other"}
				s.userKnownHosts, s.globalKnownHosts = []string{home + "/a", "/etc/b"}, nil
				s.user, s.strict = "git", strictAcceptNew
			})},
		{name: "IdentityFile none, no agent",
			env:  map[string]string{"SSH_AUTH_SOCK": "/run/agent.sock", "GIT_SSH_COMMAND": "ssh -o IdentityFile=none -o IdentityAgent=none -o StrictHostKeyChecking=off"},
			want: with(func(s *sshSettings) { s.identities, s.strict = nil, strictNo })},
		{name: "options a listing may ignore",
			env:  map[string]string{"GIT_SSH_COMMAND": "ssh -4 -v -E /tmp/ssh.log -o ConnectTimeout=5 -o ServerAliveInterval=10 -o LogLevel=ERROR -o PubkeyAuthentication=yes"},
			want: defaults},
		{name: "another program", env: map[string]string{"GIT_SSH_COMMAND": "sshpass -p secret ssh"},
			wantErr: ErrSSHUnsupported, wantMsg: "the daemon's GIT_SSH_COMMAND runs sshpass: source.poll lists branches in Go and can honour ssh's options only"},
		{name: "GIT_SSH a wrapper", env: map[string]string{"GIT_SSH": "/usr/local/bin/git-ssh-wrapper"},
			wantErr: ErrSSHUnsupported, wantMsg: "the daemon's GIT_SSH is /usr/local/bin/git-ssh-wrapper: source.poll lists branches in Go and runs no program"},
		{name: "a port", env: map[string]string{"GIT_SSH_COMMAND": "ssh -p 2222"},
			wantErr: ErrSSHUnsupported, wantMsg: "the daemon's GIT_SSH_COMMAND: -p 2222: name the port in source.repo instead (ssh://git@host:2222/org/repo.git)"},
		{name: "a proxy", env: map[string]string{"GIT_SSH_COMMAND": "ssh -o ProxyJump=bastion"},
			wantErr: ErrSSHUnsupported, wantMsg: "the daemon's GIT_SSH_COMMAND: -o ProxyJump=bastion: source.poll cannot honour ssh's ProxyJump"},
		{name: "a jump host flag", env: map[string]string{"GIT_SSH_COMMAND": "ssh -J bastion"},
			wantErr: ErrSSHUnsupported, wantMsg: "the daemon's GIT_SSH_COMMAND: source.poll cannot honour ssh's -J"},
		{name: "a config file", env: map[string]string{"GIT_SSH_COMMAND": "ssh -F /etc/promoter/ssh_config"},
			wantErr: ErrSSHUnsupported, wantMsg: "-F /etc/promoter/ssh_config: source.poll reads no ssh config file"},
		{name: "a bad StrictHostKeyChecking", env: map[string]string{"GIT_SSH_COMMAND": "ssh -o StrictHostKeyChecking=maybe"},
			wantErr: ErrSSHCommand, wantMsg: `StrictHostKeyChecking is yes, ask, accept-new, no or off, not "maybe"`},
		{name: "a missing value", env: map[string]string{"GIT_SSH_COMMAND": "ssh -i"},
			wantErr: ErrSSHCommand, wantMsg: "the daemon's GIT_SSH_COMMAND ends with -i, which takes a value"},
		{name: "a host", env: map[string]string{"GIT_SSH_COMMAND": "ssh git@example.com"},
			wantErr: ErrSSHCommand, wantMsg: `the daemon's GIT_SSH_COMMAND has "git@example.com" where ssh takes options`},
		{name: "a pipeline", env: map[string]string{"GIT_SSH_COMMAND": "ssh -i key | tee"},
			wantErr: ErrShellSyntax, wantMsg: `the daemon's GIT_SSH_COMMAND: sh syntax '|'`},
	}
	t.Run("no home directory", func(t *testing.T) {
		got, err := readSSHSetup(func(string) string { return "" }, "")
		want := sshSettings{globalKnownHosts: defaults.globalKnownHosts, strict: strictYes}
		if err != nil || !cmp.Equal(want, got.sshSettings, cmp.AllowUnexported(sshSettings{})) {
			t.Errorf("got %+v (%v), want %+v", got.sshSettings, err, want)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readSSHSetup(func(k string) string {
				if k == "HOME" {
					return home
				}
				return tt.env[k]
			}, home)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("got error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.sshSettings, cmp.AllowUnexported(sshSettings{})); diff != "" {
				t.Errorf("setup (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShellWords(t *testing.T) {
	env := map[string]string{"HOME": "/root", "KEY": "/keys/a b", "EMPTY": ""}
	tests := []struct {
		in      string
		want    []string
		wantErr error  // the rule broken
		wantMsg string // part of the message, which names what is wrong
	}{
		{in: "", want: nil},
		{in: "  ssh\t-q \n -T ", want: []string{"ssh", "-q", "-T"}},
		{in: `ssh -i 'a b' -i "c d" -i e\ f`, want: []string{"ssh", "-i", "a b", "-i", "c d", "-i", "e f"}},
		{in: `ssh -i $KEY -i "${KEY}/x" -i '$KEY' -i \$KEY`, want: []string{"ssh", "-i", "/keys/a b", "-i", "/keys/a b/x", "-i", "$KEY", "-i", "$KEY"}},
		{in: `ssh -i ~/.ssh/k -i a~/b -i "~/c"`, want: []string{"ssh", "-i", "/root/.ssh/k", "-i", "a~/b", "-i", "~/c"}},
		{in: `ssh "" $EMPTY x"$EMPTY"`, want: []string{"ssh", "", "x"}},
		{in: `ssh "a\"b\\c\d"`, want: []string{"ssh", `a"b\c\d`}},
		{in: "ssh -o 'a#b' x#y", want: []string{"ssh", "-o", "a#b", "x#y"}},
		{in: "ssh 'unclosed", wantErr: ErrShellSyntax, wantMsg: "an unclosed '"},
		{in: `ssh "unclosed`, wantErr: ErrShellSyntax, wantMsg: `an unclosed "`},
		{in: `ssh -i $(cat /key)`, wantErr: ErrShellSyntax, wantMsg: "$ that is not $NAME or ${NAME}"},
		{in: "ssh -i `cat /key`", wantErr: ErrShellSyntax, wantMsg: "sh syntax '`'"},
		{in: "ssh; rm -rf /", wantErr: ErrShellSyntax, wantMsg: "sh syntax ';'"},
		{in: "ssh -i key* ", wantErr: ErrShellSyntax, wantMsg: "sh syntax '*'"},
		{in: "ssh # comment", wantErr: ErrShellSyntax, wantMsg: "sh syntax '#'"},
		{in: `ssh \`, wantErr: ErrShellSyntax, wantMsg: `a trailing \`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := shellWords(tt.in, func(k string) string { return env[k] })
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("got %q, error %v, want %v containing %q", got, err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("words (-want +got):\n%s", diff)
			}
		})
	}
}
