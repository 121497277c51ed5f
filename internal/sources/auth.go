package sources

import (
	"context"
	"fmt"
	"net/url"
	"os"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// credentials are what one poll presents to its git server: go-git's list options and, over
// ssh, the key files offered, which a refusal names. release ends what the poll opened (a
// connection to the ssh agent) once it is over.
type credentials struct {
	opts    git.ListOptions
	keys    []string
	release func()
}

// credentials are those of a poll of t, read from the daemon's environment as git read them:
//
//   - http(s): source.pollToken as basic auth x-access-token:<token>, sent to the
//     repository's origin only (go-git drops it on a redirect elsewhere); for https, the
//     CA certificates of GIT_SSL_CAINFO on top of the system's, and no verification with
//     GIT_SSL_NO_VERIFY set. Proxies come from HTTPS_PROXY, HTTP_PROXY and NO_PROXY
//     (net/http.ProxyFromEnvironment).
//   - ssh and scp-style URLs: the daemon's ssh setup (sshSetup, read once by New).
//   - git://: nothing; the protocol has no authentication.
//
// A local path or file:// URL is refused: go-git would run git-upload-pack for it.
func (p *Poller) credentials(ctx context.Context, t *target) (*credentials, error) {
	c := &credentials{release: func() {}}
	if t.token != "" {
		if u, err := url.Parse(t.repo); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, ruleErrorf(ErrRepoURL, "a source token is sent to http(s) repositories only, and %s is not one", redact(t.repo))
		}
	}
	ep, err := transport.NewEndpoint(t.repo)
	if err != nil {
		return nil, fmt.Errorf("%s is not a git URL: %w", redact(t.repo), err)
	}
	switch ep.Protocol {
	case "https":
		if file := os.Getenv("GIT_SSL_CAINFO"); file != "" {
			if c.opts.CABundle, err = os.ReadFile(file); err != nil {
				return nil, fmt.Errorf("reading the CA certificates of the daemon's GIT_SSL_CAINFO: %w", err)
			}
		}
		_, c.opts.InsecureSkipTLS = os.LookupEnv("GIT_SSL_NO_VERIFY") // set, whatever its value, as git reads it
		fallthrough
	case "http":
		if t.token != "" {
			c.opts.Auth = &githttp.BasicAuth{Username: "x-access-token", Password: t.token}
		}
	case "ssh":
		if p.ssh == nil { // New reads it when a polled repository is ssh, so never
			return nil, fmt.Errorf("%s: the daemon's ssh setup was not read", redact(t.repo))
		}
		return p.ssh.credentials(ctx, ep, p.log)
	case "git":
	case "file":
		return nil, ruleErrorf(ErrRepoURL, "%s is a path on the daemon's machine: source.poll lists a git server's branch (git://, http(s)://, ssh:// or scp-style URL), and the daemon runs no git to read a local repository", redact(t.repo))
	default:
		return nil, ruleErrorf(ErrRepoURL, "%s: source.poll lists git://, http(s)://, ssh:// and scp-style URLs, not %s://", redact(t.repo), ep.Protocol)
	}
	return c, nil
}
