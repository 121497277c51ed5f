package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPollFollowsTheBranch: the first poll publishes the branch head, a poll of the same
// head publishes nothing, and a pushed commit is published once.
func TestPollFollowsTheBranch(t *testing.T) {
	srv := testenv.StartGitServer(t)
	repo, first := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	pub := &bustest.Recorder{}
	m := metrics.Discard()
	p := newPoller(t, pub, []types.Pipeline{polled("app", repo, "main", time.Minute)}, WithMetrics(m))

	var second string
	steps := []struct {
		name        string
		change      func()
		want        Outcome
		wantCalls   int // publishes so far
		wantStored  func() []types.SourceChanged
		wantCounted map[Outcome]float64
	}{
		{
			name: "first poll publishes the head", want: OutcomeNew, wantCalls: 1,
			wantStored:  func() []types.SourceChanged { return []types.SourceChanged{changed("app", repo, "main", first)} },
			wantCounted: map[Outcome]float64{OutcomeNew: 1},
		},
		{
			name: "the same head publishes nothing", want: OutcomeUnchanged, wantCalls: 1,
			wantStored:  func() []types.SourceChanged { return []types.SourceChanged{changed("app", repo, "main", first)} },
			wantCounted: map[Outcome]float64{OutcomeNew: 1, OutcomeUnchanged: 1},
		},
		{
			name:   "a pushed commit is published",
			change: func() { second = srv.Commit(t, "app", map[string]string{"hello.txt": "2\n"}) },
			want:   OutcomeNew, wantCalls: 2,
			wantStored: func() []types.SourceChanged {
				return []types.SourceChanged{changed("app", repo, "main", first), changed("app", repo, "main", second)}
			},
			wantCounted: map[Outcome]float64{OutcomeNew: 2, OutcomeUnchanged: 1},
		},
		{
			name: "and only once", want: OutcomeUnchanged, wantCalls: 2,
			wantStored: func() []types.SourceChanged {
				return []types.SourceChanged{changed("app", repo, "main", first), changed("app", repo, "main", second)}
			},
			wantCounted: map[Outcome]float64{OutcomeNew: 2, OutcomeUnchanged: 2},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.change != nil {
				s.change()
			}
			got, err := p.Poll(context.Background(), "app")
			if err != nil || got != s.want {
				t.Fatalf("got %s (%v), want %s", got, err, s.want)
			}
			calls, stored := published(t, pub)
			if calls != s.wantCalls {
				t.Errorf("got %d publishes, want %d", calls, s.wantCalls)
			}
			if diff := cmp.Diff(s.wantStored(), stored); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			for _, o := range []Outcome{OutcomeNew, OutcomeDuplicate, OutcomeUnchanged, OutcomeMissing, OutcomeFailed} {
				if got := testutil.ToFloat64(m.SourcePolls.WithLabelValues(string(o))); got != s.wantCounted[o] {
					t.Errorf("promoter_source_polls_total{outcome=%q}: got %v, want %v", o, got, s.wantCounted[o])
				}
			}
		})
	}
}

// TestPollOutcomes: one poll of a pipeline in each situation, what it publishes, what it
// counts, and what its error says. No credential reaches an error or a log line.
func TestPollOutcomes(t *testing.T) {
	const token = "s3cret-git-token"
	srv := testenv.StartGitServer(t)
	repo, head := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	access := srv.ServeHTTP(t, token)
	private := access.URL("app")
	empty := emptyRepo(t, srv, "empty")
	closed := fmt.Sprintf("git://127.0.0.1:%d/app.git", testenv.FreePort(t))
	silent := silentServer(t)
	errBusDown := errors.New("nats: no responders available for request")
	tests := []struct {
		name       string
		pipeline   types.Pipeline
		opts       []Option
		setup      func(*bustest.Recorder)
		want       Outcome
		wantStored []types.SourceChanged
		wantErr    error  // errors.Is
		wantErrMsg string // part of the error
	}{
		{
			name: "a head a webhook reported first", pipeline: polled("app", repo, "main", time.Minute),
			setup: func(f *bustest.Recorder) { f.Saw(changed("app", repo, "main", head).MsgID()) },
			want:  OutcomeDuplicate,
		},
		{
			name: "the branch is missing", pipeline: polled("app", repo, "release", time.Minute),
			want: OutcomeMissing, wantErr: ErrBranchNotFound, wantErrMsg: "has no branch release (check source.branch of pipeline app)",
		},
		{
			name: "the repository is missing", pipeline: polled("app", "git://"+srv.Host+"/nope.git", "main", time.Minute),
			want: OutcomeFailed, wantErrMsg: "git ls-remote git://" + srv.Host + "/nope.git refs/heads/main: repository not found",
		},
		{
			name: "the repository has no commit yet", pipeline: polled("app", empty, "main", time.Minute),
			want: OutcomeMissing, wantErr: ErrBranchNotFound, wantErrMsg: "has no branch main",
		},
		{
			name: "the server is down", pipeline: polled("app", closed, "main", time.Minute),
			want: OutcomeFailed, wantErrMsg: "refs/heads/main: dial tcp " + strings.TrimSuffix(strings.TrimPrefix(closed, "git://"), "/app.git") + ": connect: connection refused",
		},
		{
			name: "the repository is missing over http", pipeline: polled("app", access.URL("nope"), "main", time.Minute),
			opts: []Option{WithToken("app", token)},
			want: OutcomeFailed, wantErrMsg: "/nope.git refs/heads/main: repository not found",
		},
		{
			name: "a local path", pipeline: polled("app", srv.Root+"/app.git", "main", time.Minute),
			want: OutcomeFailed, wantErrMsg: "is a path on the daemon's machine",
		},
		{
			name: "the server never answers", pipeline: polled("app", silent, "main", time.Minute),
			opts: []Option{WithTimeout(300 * time.Millisecond)},
			want: OutcomeFailed, wantErrMsg: "refs/heads/main: no answer in 300ms",
		},
		{
			name: "the bus is down", pipeline: polled("app", repo, "main", time.Minute),
			setup: func(f *bustest.Recorder) { f.Fail(errBusDown) },
			want:  OutcomeFailed, wantErr: errBusDown,
		},
		{
			name: "a private repository with its token", pipeline: polled("app", private, "main", time.Minute),
			opts: []Option{WithToken("app", token)},
			want: OutcomeNew, wantStored: []types.SourceChanged{changed("app", private, "main", head)},
		},
		{
			name: "a private repository without a token", pipeline: polled("app", private, "main", time.Minute),
			want: OutcomeFailed, wantErrMsg: "the git server asked for credentials: set source.pollToken of pipeline app",
		},
		{
			name: "a private repository with a wrong token", pipeline: polled("app", private, "main", time.Minute),
			opts: []Option{WithToken("app", "wrong-"+token)},
			want: OutcomeFailed, wantErrMsg: "the git server refused source.pollToken of pipeline app",
		},
		{
			name: "a token for a git:// repository", pipeline: polled("app", repo, "main", time.Minute),
			opts: []Option{WithToken("app", token)},
			want: OutcomeFailed, wantErrMsg: "a source token is sent to http(s) repositories only",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &bustest.Recorder{}
			if tt.setup != nil {
				tt.setup(pub)
			}
			var logs bytes.Buffer
			m := metrics.Discard()
			opts := append([]Option{WithMetrics(m), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))}, tt.opts...)
			p := newPoller(t, pub, []types.Pipeline{tt.pipeline}, opts...)
			got, err := p.Poll(context.Background(), "app")
			if got != tt.want {
				t.Errorf("got %s (%v), want %s", got, err, tt.want)
			}
			switch {
			case tt.wantErr == nil && tt.wantErrMsg == "" && err != nil:
				t.Errorf("got error %v, want none", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			case tt.wantErrMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErrMsg)):
				t.Errorf("got error %v, want it to contain %q", err, tt.wantErrMsg)
			}
			if _, stored := published(t, pub); !cmp.Equal(tt.wantStored, stored) {
				t.Errorf("stored (-want +got):\n%s", cmp.Diff(tt.wantStored, stored))
			}
			if n := testutil.ToFloat64(m.SourcePolls.WithLabelValues(string(tt.want))); n != 1 {
				t.Errorf("promoter_source_polls_total{outcome=%q}: got %v, want 1", tt.want, n)
			}
			if strings.Contains(fmt.Sprint(err), token) || strings.Contains(logs.String(), token) {
				t.Errorf("the token reached the error or the logs:\n%v\n%s", err, logs.String())
			}
		})
	}
}

// silentServer accepts git:// connections and never answers, until the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "git://" + ln.Addr().String() + "/app.git"
}

// TestPollAfterAFailure: a failed poll (the bus did not store the head) publishes the head
// at the next poll; a successful one does not publish it again.
func TestPollAfterAFailure(t *testing.T) {
	srv := testenv.StartGitServer(t)
	repo, head := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	pub := &bustest.Recorder{}
	p := newPoller(t, pub, []types.Pipeline{polled("app", repo, "main", time.Minute)})
	pub.Fail(errors.New("nats: timeout"))
	if got, err := p.Poll(context.Background(), "app"); got != OutcomeFailed || err == nil {
		t.Fatalf("with the bus down: got %s (%v), want %s and an error", got, err, OutcomeFailed)
	}
	pub.Fail(nil)
	for i, want := range []Outcome{OutcomeNew, OutcomeUnchanged} {
		if got, err := p.Poll(context.Background(), "app"); got != want || err != nil {
			t.Fatalf("poll %d after the bus is back: got %s (%v), want %s", i+1, got, err, want)
		}
	}
	if _, stored := published(t, pub); !cmp.Equal(stored, []types.SourceChanged{changed("app", repo, "main", head)}) {
		t.Errorf("stored %+v, want the head %s once", stored, head)
	}
}

// TestRun: Run polls every polled pipeline on start, keeps polling a pipeline whose polls
// fail (its repository does not exist yet) and publishes its head once it does, and
// returns nil when its context ends.
func TestRun(t *testing.T) {
	srv := testenv.StartGitServer(t)
	repo, head := srv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	laterRepo := "git://" + srv.Host + "/later.git"
	pub := &bustest.Recorder{}
	m := metrics.Discard()
	p := newPoller(t, pub, []types.Pipeline{
		polled("app", repo, "main", time.Hour), // polled on start only, in this test
		polled("later", laterRepo, "main", 20*time.Millisecond),
		polled("webhooks-only", repo, "main", 0),
	}, WithMetrics(m))
	if diff := cmp.Diff([]string{"app", "later"}, p.Pipelines()); diff != "" {
		t.Errorf("polled pipelines (-want +got):\n%s", diff)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	waitFor(t, "the start-up poll of app", func() bool { _, s := published(t, pub); return len(s) == 1 })
	waitFor(t, "two failed polls of later", func() bool {
		return testutil.ToFloat64(m.SourcePolls.WithLabelValues(string(OutcomeFailed))) >= 2
	})
	_, later := srv.CreateRepo(t, "later", map[string]string{"Dockerfile": "FROM scratch\n"})
	waitFor(t, "later's head", func() bool { _, s := published(t, pub); return len(s) == 2 })
	waitFor(t, "a poll of later's unchanged head", func() bool {
		return testutil.ToFloat64(m.SourcePolls.WithLabelValues(string(OutcomeUnchanged))) >= 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	want := []types.SourceChanged{changed("app", repo, "main", head), changed("later", laterRepo, "main", later)}
	if _, stored := published(t, pub); !cmp.Equal(want, stored) {
		t.Errorf("stored (-want +got):\n%s", cmp.Diff(want, stored))
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		pipelines []types.Pipeline
		opts      []Option
		wantErr   error  // the rule broken
		wantMsg   string // part of the message, which names the setting
	}{
		{name: "nothing polled", pipelines: []types.Pipeline{polled("app", "https://git.example/app.git", "main", 0)}},
		{name: "polled", pipelines: []types.Pipeline{polled("app", "https://git.example/app.git", "main", time.Minute)},
			opts: []Option{WithToken("app", "t")}},
		{name: "negative interval", pipelines: []types.Pipeline{polled("app", "https://git.example/app.git", "main", -time.Second)},
			wantErr: ErrConfig, wantMsg: "pipeline app: source.poll must not be negative, got -1s"},
		{name: "no repository", pipelines: []types.Pipeline{polled("app", "", "main", time.Minute)},
			wantErr: ErrConfig, wantMsg: "pipeline app: source.poll needs source.repo and source.branch"},
		{name: "token of a pipeline not polled", pipelines: []types.Pipeline{polled("app", "https://git.example/app.git", "main", 0)},
			opts: []Option{WithToken("app", "t")}, wantErr: ErrConfig, wantMsg: "a source token is given for pipeline app, which is not polled"},
		{name: "empty token", opts: []Option{WithToken("app", "")}, wantErr: ErrConfig, wantMsg: "a source token must not be empty"},
		{name: "zero timeout", opts: []Option{WithTimeout(0)}, wantErr: ErrConfig, wantMsg: "git ls-remote timeout must be positive, got 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&bustest.Recorder{}, tt.pipelines, tt.opts...)
			if !errors.Is(err, tt.wantErr) || (err != nil && !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Errorf("got error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
	t.Run("no publisher", func(t *testing.T) {
		if _, err := New(nil, nil); err == nil {
			t.Error("got no error, want one")
		}
	})
	t.Run("no git", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		if _, err := New(&bustest.Recorder{}, []types.Pipeline{polled("app", "https://git.example/app.git", "main", time.Minute)}); err != nil {
			t.Errorf("got error %v, want none: polls run no git", err)
		}
	})
	t.Run("an ssh command a poll cannot honour", func(t *testing.T) {
		t.Setenv("GIT_SSH_COMMAND", "ssh -o ProxyCommand=nc")
		_, err := New(&bustest.Recorder{}, []types.Pipeline{polled("app", "git@git.example:acme/app.git", "main", time.Minute)})
		if want := "source.poll of pipeline app (git@git.example:acme/app.git) logs in with ssh: the daemon's GIT_SSH_COMMAND: -o ProxyCommand=nc: source.poll cannot honour ssh's ProxyCommand"; err == nil || err.Error() != want {
			t.Errorf("got error %v, want %q", err, want)
		}
		if _, err := New(&bustest.Recorder{}, []types.Pipeline{polled("app", "https://git.example/app.git", "main", time.Minute)}); err != nil {
			t.Errorf("without an ssh repository: got error %v, want none", err)
		}
	})
	t.Run("a pipeline not polled", func(t *testing.T) {
		p, err := New(&bustest.Recorder{}, []types.Pipeline{polled("app", "https://git.example/app.git", "main", 0)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Poll(context.Background(), "app"); !errors.Is(err, ErrNotPolled) {
			t.Errorf("got %v, want %v", err, ErrNotPolled)
		}
		if err := p.Run(context.Background()); err != nil {
			t.Errorf("Run with nothing to poll: got %v, want nil at once", err)
		}
	})
}
