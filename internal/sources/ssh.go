package sources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// The values of sshSettings.strict, ssh's StrictHostKeyChecking.
const (
	// strictYes: a host whose key is not known, or differs, is refused. ssh's default,
	// "ask", is this without a terminal to ask on, which the daemon never has.
	strictYes = "yes"
	// strictAcceptNew: an unknown host's key is added to the first user known-hosts
	// file and accepted; a key that differs is refused.
	strictAcceptNew = "accept-new"
	// strictNo: as accept-new, and a key that differs is accepted too (ssh then still
	// logs in with a public key, and warns).
	strictNo = "no"
)

// sshSetup is how polls log in to ssh git servers (sshSettings), and the lock of the
// known-hosts file they add to.
type sshSetup struct {
	sshSettings
	mu sync.Mutex // serialises additions to userKnownHosts[0]
}

// sshSettings are what OpenSSH's ssh would do with the daemon's environment: its defaults
// under ~/.ssh changed by the options of GIT_SSH_COMMAND that bear on listing a branch
// (readSSHSetup). The key files and known hosts are read at each poll, so a replaced key
// or an added host needs no restart.
type sshSettings struct {
	identities       []string // -i, IdentityFile; default ~/.ssh/id_{rsa,ecdsa,ed25519}
	identitiesOnly   bool     // IdentitiesOnly: offer no agent keys
	userKnownHosts   []string // UserKnownHostsFile; default ~/.ssh/known_hosts{,2}
	globalKnownHosts []string // GlobalKnownHostsFile; default /etc/ssh/ssh_known_hosts{,2}
	strict           string   // StrictHostKeyChecking: strictYes (default), strictAcceptNew or strictNo
	user             string   // -l, User; "": the URL's user, else the daemon's
	agent            string   // the ssh agent's socket: SSH_AUTH_SOCK, IdentityAgent; "" none
}

// credentials log in to the ssh server of ep, for a poll that ends at ctx's deadline.
func (s *sshSetup) credentials(ctx context.Context, ep *transport.Endpoint, log *slog.Logger) (*credentials, error) {
	name, err := s.login(ep)
	if err != nil {
		return nil, err
	}
	check, algorithms, err := s.hostKeys(sshAddr(ep), log)
	if err != nil {
		return nil, err
	}
	c := &credentials{release: func() {}}
	signers, notes := s.keys()
	for _, f := range s.identities {
		if _, skipped := notes[f]; !skipped {
			c.keys = append(c.keys, f)
		}
	}
	if s.agent != "" && !s.identitiesOnly {
		// As ssh, a poll goes on without the agent when it cannot be reached.
		var d net.Dialer
		if conn, err := d.DialContext(ctx, "unix", s.agent); err == nil {
			c.release = func() { _ = conn.Close() }
			if keys, err := agent.NewClient(conn).Signers(); err == nil && len(keys) > 0 {
				signers = append(signers, keys...)
				c.keys = append(c.keys, fmt.Sprintf("%d from the ssh agent", len(keys)))
			}
		}
	}
	if len(signers) == 0 {
		c.release()
		why := []string{"no identity file (IdentityFile none)"}
		if len(s.identities) > 0 {
			why = why[:0]
		}
		for _, f := range s.identities {
			why = append(why, f+": "+notes[f])
		}
		return nil, fmt.Errorf("no ssh key to log in to %s with (%s): put the daemon's key in ~/.ssh/id_ed25519, or name it in GIT_SSH_COMMAND (ssh -i FILE)", ep.Host, strings.Join(why, "; "))
	}
	timeout := time.Duration(0) // none: go-git's dial then has no deadline
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), time.Millisecond)
	}
	c.opts.Auth = &sshAuth{
		PublicKeysCallback: gitssh.PublicKeysCallback{
			User:     name,
			Callback: func() ([]ssh.Signer, error) { return signers, nil },
			HostKeyCallbackHelper: gitssh.HostKeyCallbackHelper{
				HostKeyCallback: check, HostKeyAlgorithms: algorithms,
			},
		},
		timeout: timeout,
	}
	return c, nil
}

// keys are the signers of the identity files that hold a key ssh could use without a
// passphrase, and, by file, why the others were skipped (ssh skips them too: a missing
// file silently, an encrypted key for want of a terminal to ask on).
func (s *sshSettings) keys() ([]ssh.Signer, map[string]string) {
	var signers []ssh.Signer
	notes := map[string]string{}
	for _, f := range s.identities {
		pem, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			notes[f] = "does not exist"
			continue
		}
		if err != nil {
			notes[f] = err.Error()
			continue
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var encrypted *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &encrypted):
			notes[f] = "encrypted with a passphrase, which a poll cannot ask for"
		case err != nil:
			notes[f] = "not a private key ssh reads: " + err.Error()
		default:
			signers = append(signers, signer)
		}
	}
	return signers, notes
}

// login is the user name a poll of ep logs in as: the URL's, else -l or User, else the
// daemon's own, as ssh.
func (s *sshSettings) login(ep *transport.Endpoint) (string, error) {
	switch {
	case ep.User != "":
		return ep.User, nil
	case s.user != "":
		return s.user, nil
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	if name := os.Getenv("USER"); name != "" {
		return name, nil
	}
	return "", fmt.Errorf("no user to log in to %s as: name one in source.repo (ssh://git@%s/…, git@%s:…)", ep.Host, ep.Host, ep.Host)
}

// sshAddr is the host:port go-git's ssh transport dials for ep, after the HostName and Port
// of ~/.ssh/config, which it reads.
func sshAddr(ep *transport.Endpoint) string {
	host, port := ep.Host, ep.Port
	if c := gitssh.DefaultSSHConfig; c != nil {
		if h := c.Get(ep.Host, "Hostname"); h != "" {
			host = h
			if p, err := strconv.Atoi(c.Get(ep.Host, "Port")); err == nil {
				port = p
			}
		}
	}
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// hostKeys are the check of a server's host key against the known-hosts files that exist,
// with StrictHostKeyChecking's policy, and the host key algorithms to ask addr for: those
// of its known keys, as ssh does, so that a server with several host keys shows the one
// known. The matching is golang.org/x/crypto/ssh/knownhosts', through
// github.com/skeema/knownhosts (go-git's own choice), which adds the algorithms and
// @cert-authority lines.
func (s *sshSetup) hostKeys(addr string, log *slog.Logger) (ssh.HostKeyCallback, []string, error) {
	var files []string
	for _, f := range append(append([]string(nil), s.userKnownHosts...), s.globalKnownHosts...) {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	db, err := knownhosts.NewDB(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the daemon's ssh known hosts: %w", err)
	}
	known := db.HostKeyCallback()
	check := func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := known(host, remote, key)
		var revoked *xknownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &revoked):
			return err
		case knownhosts.IsHostUnknown(err) && s.strict != strictYes:
			// As ssh: the key is accepted even when it cannot be recorded.
			if err := s.addKnownHost(host, key); err != nil {
				log.Warn("accepted an unknown ssh host key, but could not add it to the known hosts", "host", knownhosts.Normalize(host),
					"key", ssh.FingerprintSHA256(key), "strict_host_key_checking", s.strict, "error", err)
				return nil
			}
			log.Info("added an ssh host key to the known hosts", "host", knownhosts.Normalize(host),
				"key", ssh.FingerprintSHA256(key), "file", s.userKnownHosts[0], "strict_host_key_checking", s.strict)
			return nil
		case knownhosts.IsHostUnknown(err):
			where := "none exists"
			if len(files) > 0 {
				where = "looked in " + strings.Join(files, ", ")
			}
			return &hostKeyError{msg: fmt.Sprintf("no host key of %s is known (%s): add its key to %s once you have checked it (ssh-keyscan prints it)",
				knownhosts.Normalize(host), where, s.firstUserKnownHosts()), err: err}
		case knownhosts.IsHostKeyChanged(err) && s.strict == strictNo:
			log.Warn("the ssh host key of a git server differs from the known one; accepted, as StrictHostKeyChecking=no",
				"host", knownhosts.Normalize(host), "key", ssh.FingerprintSHA256(key))
			return nil
		case knownhosts.IsHostKeyChanged(err):
			var ke *xknownhosts.KeyError
			errors.As(err, &ke)
			var lines []string
			for _, w := range ke.Want {
				lines = append(lines, fmt.Sprintf("%s:%d", w.Filename, w.Line))
			}
			return &hostKeyError{msg: fmt.Sprintf("the host key of %s (%s) is not the one known (%s): has the server's key changed, or is someone in between?",
				knownhosts.Normalize(host), ssh.FingerprintSHA256(key), strings.Join(lines, ", ")), err: err}
		}
		return err
	}
	return check, db.HostKeyAlgorithms(addr), nil
}

// hostKeyError is a host key the setup refuses; it says why and what to do.
type hostKeyError struct {
	msg string
	err error // *xknownhosts.KeyError
}

func (e *hostKeyError) Error() string { return "host key verification failed: " + e.msg }
func (e *hostKeyError) Unwrap() error { return e.err }

func (s *sshSettings) firstUserKnownHosts() string {
	if len(s.userKnownHosts) == 0 {
		return "a known-hosts file (none is set: UserKnownHostsFile none)"
	}
	return s.userKnownHosts[0]
}

// addKnownHost appends host's key to the first user known-hosts file, as ssh does with
// StrictHostKeyChecking=accept-new or no, creating it (and its directory, mode 0700) when
// missing.
func (s *sshSetup) addKnownHost(host string, key ssh.PublicKey) error {
	if len(s.userKnownHosts) == 0 {
		return errors.New("UserKnownHostsFile is none")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	file := s.userKnownHosts[0]
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(knownhosts.Line([]string{host}, key) + "\n")
	return errors.Join(err, f.Close())
}

// sshAuth is go-git's public key authentication with the dial timeout of the poll: go-git
// connects without a context, bounded by ssh.ClientConfig.Timeout alone.
type sshAuth struct {
	gitssh.PublicKeysCallback
	timeout time.Duration
}

func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	c, err := a.PublicKeysCallback.ClientConfig()
	if err != nil {
		return nil, err
	}
	c.Timeout = a.timeout
	return c, nil
}

var _ gitssh.AuthMethod = (*sshAuth)(nil)
