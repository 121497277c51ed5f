package sources

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// maxStderr bounds what of git's stderr a failed poll keeps for its error.
const maxStderr = 4 << 10

// head lists the pipeline's branch with `git ls-remote <repo> refs/heads/<branch>` and
// returns the commit it points at, or ErrBranchNotFound. git runs with the daemon's
// environment (proxies, CA bundles, ssh configuration), never prompts, and is killed with
// its helpers (git-remote-https, ssh) when the poll's timeout ends.
func (p *Poller) head(ctx context.Context, t *target) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ref := "refs/heads/" + t.branch
	// --end-of-options: a repository or branch starting with "-" is never an option.
	cmd := exec.CommandContext(ctx, p.git, "ls-remote", "--end-of-options", t.repo, ref)
	env, err := gitEnv(os.Environ(), t.repo, t.token)
	if err != nil {
		return "", fmt.Errorf("pipeline %s: %w", t.pipeline, err)
	}
	cmd.Env = env
	var stdout bytes.Buffer
	stderr := &capped{max: maxStderr}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	killGroup(cmd)
	cmd.WaitDelay = time.Second // a helper holding the pipes past the kill
	err = cmd.Run()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("git ls-remote %s %s: no answer in %s (is the git server reachable from the daemon?)", redact(t.repo), ref, p.timeout)
	case err != nil:
		return "", fmt.Errorf("git ls-remote %s %s: %s%w: %s", redact(t.repo), ref, remedy(stderr.text(), t), err, stderr.text())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		sha, name, ok := strings.Cut(sc.Text(), "\t")
		if !ok || name != ref { // ls-remote matches patterns by their tail: refs/x/refs/heads/main too
			continue
		}
		if err := types.ValidateRevision(sha); err != nil {
			return "", fmt.Errorf("git ls-remote %s %s answered %q: %w", redact(t.repo), ref, sha, err)
		}
		return sha, nil
	}
	return "", fmt.Errorf("%w: %s has no branch %s (check source.branch of pipeline %s)", ErrBranchNotFound, redact(t.repo), t.branch, t.pipeline)
}

// remedy is what to fix, when git's stderr says it, followed by ": "; else "".
func remedy(stderr string, t *target) string {
	// git asks for a user name when the server answered 401, with or without the header.
	if !strings.Contains(stderr, "could not read Username") && !strings.Contains(stderr, "Authentication failed") {
		return ""
	}
	if t.token == "" {
		return fmt.Sprintf("the git server asked for credentials: set source.pollToken of pipeline %s to an access token that may read the repository: ", t.pipeline)
	}
	return fmt.Sprintf("the git server refused source.pollToken of pipeline %s (expired, revoked, or without read access to the repository?): ", t.pipeline)
}

// gitEnv is the environment of git ls-remote: base, with prompts off and, for a token, an
// Authorization header (basic auth x-access-token:<token>) configured for the
// repository's origin through GIT_CONFIG_COUNT/KEY/VALUE (git 2.31+) after any entries
// base has. The token is thus in the environment of git alone (readable only by the
// daemon's user), never on a command line that ps shows; curl drops the header on a
// redirect to another host.
func gitEnv(base []string, repo, token string) ([]string, error) {
	env := append(base[:len(base):len(base)], "GIT_TERMINAL_PROMPT=0")
	if token == "" {
		return env, nil
	}
	u, err := url.Parse(repo)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("a source token is sent to http(s) repositories only, and %s is not one", redact(repo))
	}
	n := 0
	for _, kv := range base {
		if v, ok := strings.CutPrefix(kv, "GIT_CONFIG_COUNT="); ok {
			if n, err = strconv.Atoi(v); err != nil || n < 0 {
				return nil, fmt.Errorf("the daemon's GIT_CONFIG_COUNT=%q is not a count", v)
			}
		}
	}
	auth := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
	return append(env,
		fmt.Sprintf("GIT_CONFIG_KEY_%d=http.%s://%s/.extraHeader", n, u.Scheme, u.Host),
		fmt.Sprintf("GIT_CONFIG_VALUE_%d=Authorization: Basic %s", n, auth),
		fmt.Sprintf("GIT_CONFIG_COUNT=%d", n+1),
	), nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	max int
	b   bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// text is what git said, on one line.
func (c *capped) text() string {
	s := strings.Join(strings.Fields(c.b.String()), " ")
	if s == "" {
		return "git printed nothing"
	}
	return s
}
