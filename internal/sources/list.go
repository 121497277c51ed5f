package sources

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/promoter-dev/promoter/internal/types"
)

// maxCause bounds what of the server's answer a failed poll keeps for its error: go-git
// puts the body of an HTTP error response in its error.
const maxCause = 4 << 10

// head lists the pipeline's branch as `git ls-remote <repo> refs/heads/<branch>` would, in
// Go (go-git's Remote.List, no git binary), and returns the commit it points at, or
// ErrBranchNotFound. It reads the daemon's environment as git would for what a listing
// needs (proxies, GIT_SSL_CAINFO, the ssh setup: see auth.go), never prompts, and returns
// when the poll's timeout ends, whatever the connection is doing.
func (p *Poller) head(ctx context.Context, t *target) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ref := "refs/heads/" + t.branch
	creds, err := p.credentials(ctx, t)
	if err != nil {
		return "", fmt.Errorf("pipeline %s: %w", t.pipeline, err)
	}
	defer creds.release()
	refs, err := list(ctx, t.repo, &creds.opts)
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("git ls-remote %s %s: no answer in %s (is the git server reachable from the daemon?)", redact(t.repo), ref, p.timeout)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		refs = nil // no commit yet: git ls-remote answers nothing, and so the branch is missing
	case err != nil:
		return "", fmt.Errorf("git ls-remote %s %s: %s%w", redact(t.repo), ref, remedy(err, t, creds), capped{err})
	}
	sha, ok := find(refs, plumbing.ReferenceName(ref))
	if !ok {
		return "", fmt.Errorf("%w: %s has no branch %s (check source.branch of pipeline %s)", ErrBranchNotFound, redact(t.repo), t.branch, t.pipeline)
	}
	if err := types.ValidateRevision(sha); err != nil {
		return "", fmt.Errorf("git ls-remote %s %s answered %q: %w", redact(t.repo), ref, sha, err)
	}
	return sha, nil
}

// list is the refs repo advertises (go-git's Remote.ListContext), or ctx's error as soon as
// ctx ends. go-git stops reading at ctx's end, but connecting to a git:// server and the
// ssh handshake take no context: a list stuck there is abandoned, and its goroutine and
// connection end when the server or the operating system closes the connection.
func list(ctx context.Context, repo string, opts *git.ListOptions) ([]*plumbing.Reference, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{repo}})
	type result struct {
		refs []*plumbing.Reference
		err  error
	}
	done := make(chan result, 1)
	go func() {
		refs, err := remote.ListContext(ctx, opts)
		done <- result{refs, err}
	}()
	select {
	case r := <-done:
		return r.refs, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// find is the commit name points at among refs: its own hash, or that of the ref it is a
// symbolic reference to (git ls-remote prints the latter).
func find(refs []*plumbing.Reference, name plumbing.ReferenceName) (string, bool) {
	for range 2 { // a symbolic reference to a symbolic reference is none git advertises
		var next plumbing.ReferenceName
		for _, r := range refs {
			if r.Name() != name {
				continue
			}
			if r.Type() == plumbing.HashReference {
				return r.Hash().String(), true
			}
			next = r.Target()
		}
		if next == "" {
			return "", false
		}
		name = next
	}
	return "", false
}

// remedy is what to fix, when the error says it, followed by ": "; else "".
func remedy(err error, t *target, c *credentials) string {
	switch {
	// 401, with or without credentials.
	case errors.Is(err, transport.ErrAuthenticationRequired) && t.token == "":
		return fmt.Sprintf("the git server asked for credentials: set source.pollToken of pipeline %s to an access token that may read the repository: ", t.pipeline)
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return fmt.Sprintf("the git server refused source.pollToken of pipeline %s (expired, revoked, or without read access to the repository?): ", t.pipeline)
	// x/crypto/ssh has no error type for it.
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		return fmt.Sprintf("the git server refused the daemon's ssh key (%s; is its public key allowed to read the repository, e.g. as a deploy key?): ", strings.Join(c.keys, ", "))
	}
	return ""
}

// capped is an error whose text is cut after maxCause bytes, on one line.
type capped struct{ err error }

func (c capped) Error() string {
	s := strings.Join(strings.Fields(c.err.Error()), " ")
	if len(s) > maxCause {
		s = s[:maxCause] + "…"
	}
	return s
}

func (c capped) Unwrap() error { return c.err }
