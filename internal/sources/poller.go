package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// Outcome is what one poll of one pipeline came to, and the outcome label of
// promoter_source_polls_total.
type Outcome string

// The outcomes of a poll.
const (
	// OutcomeNew: the head differs from the one last published (or none was since the
	// start), and the bus stored it.
	OutcomeNew Outcome = "new"
	// OutcomeDuplicate: the head is new to this poller, but the bus had its message
	// already: a webhook, or another replica's poll, reported it first.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeUnchanged: the head is the one last published; nothing is published.
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeMissing: the repository has no such branch.
	OutcomeMissing Outcome = "missing"
	// OutcomeFailed: listing the branch failed (unreachable, refused, timed out) or the bus
	// did not store the event; the next interval tries again.
	OutcomeFailed Outcome = "failed"
)

// Poller lists the branch head of each pipeline with source.poll set, on start and every
// interval, and publishes a new head as a SourceChanged event.
//
// Several daemon replicas each poll: their finds of one head are one message (MsgID), so
// the duplicates cost a git request each and nothing else.
type Poller struct {
	pub     bus.Publisher
	ssh     *sshSetup // nil unless a polled repository is ssh
	targets map[string]*target
	order   []string // pipeline names, in configuration order
	timeout time.Duration
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time
}

// target is one polled pipeline.
type target struct {
	pipeline, repo, branch string
	interval               time.Duration
	token                  string // "" without WithToken

	mu   sync.Mutex // serialises the polls of the pipeline
	last string     // the head last published, "" before the first
}

// New polls the pipelines with source.poll set (validated configuration) and publishes with
// pub. It needs no git binary. When a polled repository is ssh, it reads the daemon's ssh
// setup (~/.ssh, SSH_AUTH_SOCK, GIT_SSH_COMMAND or GIT_SSH) and fails when that asks for
// what a poll cannot do as ssh would (readSSHSetup).
func New(pub bus.Publisher, pipelines []types.Pipeline, opts ...Option) (*Poller, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("sources: a poller needs a publisher (the bus)")
	}
	p := &Poller{pub: pub, targets: map[string]*target{}, timeout: o.timeout, log: o.log, metrics: o.metrics, now: o.now}
	for _, pl := range pipelines {
		switch s := pl.Source; {
		case s.Poll < 0:
			return nil, ruleErrorf(ErrConfig, "pipeline %s: source.poll must not be negative, got %s", pl.Name, s.Poll)
		case s.Poll == 0:
			continue
		case s.Repo == "" || s.Branch == "":
			return nil, ruleErrorf(ErrConfig, "pipeline %s: source.poll needs source.repo and source.branch", pl.Name)
		}
		p.targets[pl.Name] = &target{
			pipeline: pl.Name, repo: pl.Source.Repo, branch: pl.Source.Branch, interval: pl.Source.Poll,
			token: o.tokens[pl.Name],
		}
		p.order = append(p.order, pl.Name)
	}
	for name := range o.tokens {
		if p.targets[name] == nil {
			return nil, ruleErrorf(ErrConfig, "a source token is given for pipeline %s, which is not polled (no source.poll)", name)
		}
	}
	for _, name := range p.order {
		if ep, err := transport.NewEndpoint(p.targets[name].repo); err != nil || ep.Protocol != "ssh" {
			continue // an invalid URL fails each poll, as it did when git read it
		}
		if p.ssh, err = readSSHSetup(os.Getenv, homeDir()); err != nil {
			return nil, fmt.Errorf("source.poll of pipeline %s (%s) logs in with ssh: %w", name, redact(p.targets[name].repo), err)
		}
		break
	}
	if len(p.targets) > 0 {
		warnIgnoredGitEnv(p.log)
	}
	return p, nil
}

// Pipelines are the names of the polled pipelines, in configuration order.
func (p *Poller) Pipelines() []string { return append([]string(nil), p.order...) }

// Run polls every polled pipeline now, which publishes each current head (a webhook lost
// while no daemon ran is caught here, and one already handled is a duplicate), then every
// pipeline's interval, until ctx ends. A failed poll is logged, counted and tried again at
// the next interval. It returns nil at once when no pipeline is polled.
func (p *Poller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range p.order {
		t := p.targets[name]
		wg.Go(func() { p.follow(ctx, t) })
	}
	wg.Wait()
	return nil
}

func (p *Poller) follow(ctx context.Context, t *target) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		_, _ = p.poll(ctx, t) // logged and counted there
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // a poll longer than the interval skips ticks, never overlaps
		}
	}
}

// Poll polls pipeline once: it lists the branch head and publishes it unless it is the
// head last published. The error says why an OutcomeMissing or OutcomeFailed poll was.
func (p *Poller) Poll(ctx context.Context, pipeline string) (Outcome, error) {
	t, ok := p.targets[pipeline]
	if !ok {
		return OutcomeFailed, fmt.Errorf("%w: %s", ErrNotPolled, pipeline)
	}
	return p.poll(ctx, t)
}

func (p *Poller) poll(ctx context.Context, t *target) (Outcome, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	head, err := p.head(ctx, t)
	if err != nil {
		if ctx.Err() != nil {
			return OutcomeFailed, err // stopping: neither a failure to count nor one to log
		}
		outcome := OutcomeFailed
		if errors.Is(err, ErrBranchNotFound) {
			outcome = OutcomeMissing
		}
		p.metrics.SourcePolls.WithLabelValues(string(outcome)).Inc()
		p.log.Warn("polling the source failed", "pipeline", t.pipeline, "repo", redact(t.repo), "branch", t.branch,
			"outcome", outcome, "retry_in", t.interval.String(), "error", err)
		return outcome, err
	}
	if head == t.last {
		p.metrics.SourcePolls.WithLabelValues(string(OutcomeUnchanged)).Inc()
		p.log.Debug("source polled", "pipeline", t.pipeline, "outcome", OutcomeUnchanged, "revision", head)
		return OutcomeUnchanged, nil
	}
	ev := types.SourceChanged{
		Pipeline: t.pipeline, Repo: t.repo, Ref: "refs/heads/" + t.branch, Revision: head, Received: p.now().UTC(),
	}
	dup, err := p.pub.Publish(ctx, types.SubjectSourceChanged, ev.MsgID(), ev)
	if err != nil {
		if ctx.Err() != nil {
			return OutcomeFailed, err
		}
		p.metrics.SourcePolls.WithLabelValues(string(OutcomeFailed)).Inc()
		p.log.Warn("storing a polled source head failed", "pipeline", t.pipeline, "revision", head,
			"retry_in", t.interval.String(), "error", err)
		return OutcomeFailed, fmt.Errorf("publishing the head %s of pipeline %s: %w", head, t.pipeline, err)
	}
	t.last = head
	outcome := OutcomeNew
	if dup {
		outcome = OutcomeDuplicate
	}
	p.metrics.SourcePolls.WithLabelValues(string(outcome)).Inc()
	p.log.Info("source polled", "pipeline", t.pipeline, "outcome", outcome, "revision", head, "branch", t.branch)
	return outcome, nil
}

// homeDir is the daemon's home directory, where ~/.ssh is: $HOME, else its user's, else "".
func homeDir() string {
	if home, err := os.UserHomeDir(); err == nil {
		return home
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return ""
}

// ignoredGitEnv are variables of the daemon's environment that configured the git binary
// polls ran before, and that the Go implementation does not read.
var ignoredGitEnv = []string{
	"GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
	"GIT_PROXY_COMMAND", "GIT_SSL_CERT", "GIT_SSL_KEY", "GIT_SSL_CAPATH", "GIT_SSH_VARIANT",
}

// warnIgnoredGitEnv logs, once, the variables of ignoredGitEnv the daemon has.
func warnIgnoredGitEnv(log *slog.Logger) {
	var set []string
	for _, k := range ignoredGitEnv {
		if _, ok := os.LookupEnv(k); ok {
			set = append(set, k)
		}
	}
	if len(set) > 0 {
		log.Warn("source polls run no git binary and ignore git's configuration in the daemon's environment",
			"ignored", strings.Join(set, ","))
	}
}

// redact is repo without the password of URL credentials, for logs and errors.
func redact(repo string) string {
	if u, err := url.Parse(repo); err == nil && u.User != nil && strings.Contains(repo, "://") {
		return u.Redacted()
	}
	return repo
}
