package builders_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

func TestAgentBuildsDispatchedRequestsLocally(t *testing.T) {
	ctx := context.Background()
	b := openBus(t)
	reg := testenv.StartRegistry(t)
	pipelines := []types.Pipeline{{
		Name: "web", Source: types.Source{Repo: "https://git.example/acme/web.git", Branch: "main"},
		Platforms: platforms("linux/amd64", "linux/arm/v7"),
		Build:     types.BuildSpec{Executor: types.ExecutorLocal, Dir: sourceTree(t)},
		Staging:   types.Repository(reg.Host + "/acme/web"), ArchTag: "{revision}-{arch}{variant}",
	}}
	local, err := builders.NewLocal(registry.Client{}, pipelines)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.Discard()
	agent, err := builders.NewAgent(b, local, []types.Platform{types.MustPlatform("linux/amd64"), types.MustPlatform("linux/arm/v7")}, builders.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	res := results(t, b)
	runAgent(t, agent)
	d, err := builders.NewDispatcher(b, registry.Client{}, pipelines)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.HandleSourceChanged(ctx, types.SourceChanged{ID: "1", Pipeline: "web", Revision: "abc123"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]types.BuildResult{}
	for range 2 {
		r := nextResult(t, res, 30*time.Second)
		got[r.Request.Platform.String()] = r
	}
	for _, p := range []string{"linux/amd64", "linux/arm/v7"} {
		r := got[p]
		if r.Outcome != types.BuildSucceeded || !r.Final || r.Attempt != 1 || !strings.HasPrefix(r.Job, "local@sha256:") {
			t.Errorf("%s result: %+v, want succeeded, final, attempt 1, job local@sha256:...", p, r)
		}
		ref, _ := name.ParseReference(r.Request.Image)
		if _, err := remote.Head(ref); err != nil {
			t.Errorf("%s: %v", r.Request.Image, err)
		}
		if n := testutil.ToFloat64(m.Builds.WithLabelValues(p, "succeeded")); n != 1 {
			t.Errorf("builds{%s,succeeded}: got %v, want 1", p, n)
		}
	}
	waitQueueEmpty(t, b)
}

func TestAgentGivesUpAtOnceOnPermanentErrors(t *testing.T) {
	ctx := context.Background()
	b := openBus(t)
	// This agent builds no pipeline locally: a request for "web" can never succeed here.
	local, err := builders.NewLocal(registry.Client{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := builders.NewAgent(b, local, []types.Platform{types.MustPlatform("linux/arm64")}, builders.WithMaxAttempts(3))
	if err != nil {
		t.Fatal(err)
	}
	res := results(t, b)
	runAgent(t, agent)
	req := types.BuildRequest{Pipeline: "web", Revision: "abc", Platform: types.MustPlatform("linux/arm64"), Image: "127.0.0.1:1/acme/web:abc-arm64"}
	if _, err := b.Publish(ctx, types.BuildSubject(req.Platform), req.MsgID(), req); err != nil {
		t.Fatal(err)
	}
	r := nextResult(t, res, 20*time.Second)
	if r.Outcome != types.BuildFailed || !r.Final || r.Attempt != 1 || !strings.Contains(r.Reason, "unknown pipeline") {
		t.Errorf("result: %+v, want a final failure at attempt 1 naming the unknown pipeline", r)
	}
	waitQueueEmpty(t, b)
}

func TestAgentReportsALastAttemptLostWithItsAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := testenv.StartNATS(t)
	b := bustest.Open(t, n.URL)
	p := types.MustPlatform("linux/amd64")
	opts := []builders.Option{builders.WithMaxAttempts(1), builders.WithAckWait(time.Second)}
	local, _ := builders.NewLocal(registry.Client{}, nil)
	agent, err := builders.NewAgent(b, local, []types.Platform{p}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// A first agent takes the request and dies without a word: start one only to create
	// the consumer, stop it, then take the message by hand on a connection of its own (the
	// dead agent's) and never acknowledge it.
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- agent.Run(runCtx) }()
	var cons jetstream.Consumer
	if err := testenv.WaitFor(10*time.Second, func() (err error) {
		cons, err = js.Consumer(ctx, bus.StreamBuilds, builders.ConsumerName(p))
		return err
	}); err != nil {
		t.Fatalf("consumer %s not created within 10s: %v", builders.ConsumerName(p), err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("agent Run: %v", err)
	}
	req := types.BuildRequest{Pipeline: "web", Revision: "abc", Platform: p, Image: "127.0.0.1:1/acme/web:abc-amd64"}
	if _, err := b.Publish(ctx, types.BuildSubject(p), req.MsgID(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchContext(ctx)); err != nil {
		t.Fatal(err)
	}
	// After AckWait the request comes back: the agent reports it as the lost last attempt.
	res := results(t, b)
	runAgent(t, agent)
	r := nextResult(t, res, 20*time.Second)
	if r.Outcome != types.BuildFailed || !r.Final || r.Attempt != 2 || !strings.Contains(r.Reason, "ended without a result") {
		t.Errorf("result: %+v, want a final failure reporting the lost attempt", r)
	}
	waitQueueEmpty(t, b)
}

func TestNewAgentRefusesBadInput(t *testing.T) {
	local, err := builders.NewLocal(registry.Client{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := types.MustPlatform("linux/amd64")
	tests := []struct {
		name      string
		platforms []types.Platform
		opts      []builders.Option
		wantErr   error
		// wantInErr is for an option's error, which says what to fix.
		wantInErr string
	}{
		{name: "no platforms", wantErr: builders.ErrNoPlatforms},
		{name: "duplicate platform", platforms: []types.Platform{p, p}, wantErr: builders.ErrPlatformTwice},
		{name: "zero attempts", platforms: []types.Platform{p}, opts: []builders.Option{builders.WithMaxAttempts(0)},
			wantInErr: "max attempts must be at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := builders.NewAgent(nil, local, tc.platforms, tc.opts...)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
			if tc.wantInErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantInErr)) {
				t.Errorf("got %v, want an error saying %q", err, tc.wantInErr)
			}
		})
	}
}

// waitQueueEmpty waits until every build request was acknowledged or terminated.
func waitQueueEmpty(t *testing.T, b *bus.Bus) {
	t.Helper()
	var left []bus.StoredMessage
	err := testenv.WaitFor(10*time.Second, func() (err error) {
		left, err = b.Stored(context.Background(), bus.StreamBuilds, "promoter.builds.>")
		if err == nil && len(left) > 0 {
			return fmt.Errorf("%d left", len(left))
		}
		return err
	})
	if err != nil {
		t.Errorf("builds work queue still holds messages: %v", err)
	}
}
