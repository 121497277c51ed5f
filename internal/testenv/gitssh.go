package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHAccess is what a test needs to fetch a GitServer's repositories over SSH from the sshd
// ServeSSH started: the URLs, the client key the server requires and its host key.
type SSHAccess struct {
	// User is the login user of both URL forms: the user the tests run as (root in CI).
	// sshd logs a client in as a real user and runs git as that user, and this one owns the
	// repositories; the machine need not have a "git" user.
	User string
	// Host is "127.0.0.1:PORT", the address of the ssh:// URLs.
	Host string
	// SCPHost is a loopback address ("127.0.0.N", N >= 2) whose port 22 serves the
	// scp-style URLs, which cannot name a port.
	SCPHost string
	// PrivateKey is the only key sshd accepts: ed25519, unencrypted, in OpenSSH format.
	// PrivateKeyFile holds it, mode 0600, owned by the test's user.
	PrivateKey     []byte
	PrivateKeyFile string
	// KnownHosts is the known_hosts line for sshd's host key at Host and SCPHost;
	// KnownHostsFile holds it.
	KnownHosts     string
	KnownHostsFile string

	root string
}

// URL is repository NAME.git as ssh://USER@127.0.0.1:PORT/ROOT/NAME.git. The path is the
// repository's absolute path on this machine, which is what sshd's login user sees.
func (a *SSHAccess) URL(name string) string {
	return "ssh://" + a.User + "@" + a.Host + a.repoPath(name)
}

// SCPURL is repository NAME.git as the scp-style USER@127.0.0.N:/ROOT/NAME.git, served on
// port 22.
func (a *SSHAccess) SCPURL(name string) string {
	return a.User + "@" + a.SCPHost + ":" + a.repoPath(name)
}

// GitSSHCommand is a GIT_SSH_COMMAND for git on the test's host: it logs in with
// PrivateKeyFile only, trusts only KnownHostsFile and never prompts.
func (a *SSHAccess) GitSSHCommand() string {
	return "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i " + a.PrivateKeyFile +
		" -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + a.KnownHostsFile
}

func (a *SSHAccess) repoPath(name string) string {
	return filepath.ToSlash(filepath.Join(a.root, name+".git"))
}

// ServeSSH serves g's repositories read-only over SSH with Debian's sshd (openssh-server),
// in the foreground with its own config, host key and authorized_keys in a temporary
// directory, listening on 127.0.0.1 (a free port) and on port 22 of a free 127.0.0.N. Only
// the returned PrivateKey is accepted, and a session can only run git-upload-pack (and the
// other commands git-shell allows). sshd is stopped when the test ends; its log is in the
// test's output when the test failed.
func (g *GitServer) ServeSSH(t testing.TB) *SSHAccess {
	t.Helper()
	sshd, keygen, gitShell := sshTools(t)
	u, err := user.Current()
	if err != nil {
		t.Fatalf("looking up the current user: %v", err)
	}

	dir := t.TempDir()
	a := &SSHAccess{
		User:           u.Username,
		PrivateKeyFile: filepath.Join(dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		root:           g.Root,
	}
	hostKey, authorizedKeys, hostPub := a.writeKeys(t, dir, keygen)
	a.listen(t, hostPub)
	config := a.writeSSHDConfig(t, dir, hostKey, authorizedKeys, gitShell)
	a.startSSHD(t, sshd, config, filepath.Join(dir, "sshd.log"))
	return a
}

// sshTools finds sshd, ssh-keygen and git-shell, and checks that ssh is there.
func sshTools(t testing.TB) (sshd, keygen, gitShell string) {
	t.Helper()
	var err error
	if sshd, err = exec.LookPath("sshd"); err != nil {
		// Not on PATH for a user without sbin in it.
		sshd = "/usr/sbin/sshd"
	}
	if !isExecutable(sshd) {
		Require(t, "sshd not found (run `bash hack/buildkit.sh` to install openssh-server)")
	}
	var tools []string
	for _, name := range []string{"ssh-keygen", "ssh", "git-shell"} {
		p, err := exec.LookPath(name)
		if err != nil {
			Require(t, "%s not on PATH (run `bash hack/buildkit.sh` to install it)", name)
		}
		tools = append(tools, p)
	}
	return sshd, tools[0], tools[2]
}

// writeKeys generates sshd's host key and the client's key pair in dir, authorizes the
// client's key, and returns the host key's file, the authorized_keys file and the host's
// public key.
func (a *SSHAccess) writeKeys(t testing.TB, dir, keygen string) (hostKey, authorizedKeys string, hostPub []byte) {
	t.Helper()
	var err error
	hostKey = filepath.Join(dir, "ssh_host_ed25519_key")
	for _, key := range []string{hostKey, a.PrivateKeyFile} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "promoter-test", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", key, err, out)
		}
	}
	if a.PrivateKey, err = os.ReadFile(a.PrivateKeyFile); err != nil {
		t.Fatal(err)
	}
	clientPub, err := os.ReadFile(a.PrivateKeyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorizedKeys = filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorizedKeys, clientPub, 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, err = os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	return hostKey, authorizedKeys, hostPub
}

// listen picks sshd's two addresses (a free port on 127.0.0.1, port 22 of a free
// 127.0.0.N) and writes the known hosts entry of hostPub for both.
func (a *SSHAccess) listen(t testing.TB, hostPub []byte) {
	t.Helper()
	port := freePort(t)
	a.Host = fmt.Sprintf("127.0.0.1:%d", port)
	a.SCPHost = freeLoopbackFor22(t)
	// Both names ssh looks the host up by ("[HOST]:PORT" unless the port is 22), then
	// "TYPE BASE64" without the comment.
	fields := strings.Fields(string(hostPub))
	a.KnownHosts = fmt.Sprintf("[127.0.0.1]:%d,%s %s %s", port, a.SCPHost, fields[0], fields[1])
	if err := os.WriteFile(a.KnownHostsFile, []byte(a.KnownHosts+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

}

// writeSSHDConfig writes sshd's whole config into dir and returns its file.
func (a *SSHAccess) writeSSHDConfig(t testing.TB, dir, hostKey, authorizedKeys, gitShell string) string {
	t.Helper()
	// Every setting sshd uses is here: -f replaces /etc/ssh/sshd_config, and what is not
	// set has sshd's compiled-in default.
	config := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(config, []byte(strings.Join([]string{
		"ListenAddress " + a.Host,
		"ListenAddress " + a.SCPHost + ":22",
		"HostKey " + hostKey,
		"PidFile none",
		// Public keys only, and only ours.
		"AuthenticationMethods publickey",
		"AuthorizedKeysFile " + authorizedKeys,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		// The login user is whoever runs the tests, root in CI.
		"PermitRootLogin prohibit-password",
		"AllowUsers " + a.User,
		// The files are under /tmp, which is world-writable: StrictModes would refuse
		// authorized_keys there.
		"StrictModes no",
		// A session runs git, nothing else: git-shell only starts git-upload-pack,
		// git-receive-pack and git-upload-archive. sshd runs it through the login user's
		// shell, so that user's shell startup files must not write to stdout (as for scp).
		`ForceCommand ` + gitShell + ` -c "$SSH_ORIGINAL_COMMAND"`,
		"DisableForwarding yes",
		"PermitTTY no",
		"PermitUserEnvironment no",
		// VERBOSE names the key that was accepted or refused.
		"LogLevel VERBOSE",
		"",
	}, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root chroots its unprivileged pre-auth child into this empty
		// directory; the system's unit creates it when it starts sshd, which ours is not.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("creating sshd's privilege separation directory: %v", err)
		}
	}

	return config
}

// startSSHD runs sshd with config in the foreground until the test ends, logging to
// logPath, and waits until both of a's addresses answer.
func (a *SSHAccess) startSSHD(t testing.TB, sshd, config, logPath string) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// -D: stay in the foreground, so this process owns it; -e: log to stderr, not syslog.
	// sshd must be started by its absolute path to re-exec itself per connection.
	cmd := exec.Command(sshd, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("sshd log:\n%s", log)
		}
	})
	for _, addr := range []string{a.Host, net.JoinHostPort(a.SCPHost, "22")} {
		if err := waitSSH(addr, exited); err != nil {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("sshd on %s: %v\n%s", addr, err, log)
		}
	}
}

// freeLoopbackFor22 returns the first 127.0.0.N (N >= 2; Linux routes all of 127/8 to lo)
// whose port 22 is free. 127.0.0.1 is left alone: it is where a machine's own sshd usually
// listens. There is none when something listens on port 22 of every address.
func freeLoopbackFor22(t testing.TB) string {
	t.Helper()
	for n := 2; n <= 254; n++ {
		host := "127.0.0." + strconv.Itoa(n)
		ln, err := net.Listen("tcp", host+":22")
		if err != nil {
			continue
		}
		_ = ln.Close()
		return host
	}
	Require(t, "no 127.0.0.N with a free port 22 for scp-style git URLs (is an sshd listening on 0.0.0.0:22?)")
	return ""
}

// waitSSH waits up to 10 s until addr answers with an SSH banner, or sshd exits.
func waitSSH(addr string, exited <-chan struct{}) error {
	err := WaitFor(10*time.Second, func() error {
		select {
		case <-exited:
			return GiveUp(errors.New("sshd exited"))
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != "SSH-" {
			return fmt.Errorf("banner starts %q, want SSH-", buf)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrGiveUp) {
		return fmt.Errorf("no SSH banner after 10s: %w", err)
	}
	return err
}
