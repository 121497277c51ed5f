package builders_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
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
	b := openBus(t)
	p := types.MustPlatform("linux/amd64")
	opts := []builders.Option{builders.WithMaxAttempts(1), builders.WithAckWait(time.Second)}
	local, _ := builders.NewLocal(registry.Client{}, nil)
	agent, err := builders.NewAgent(b, local, []types.Platform{p}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// A first agent takes the request and dies without a word: start one only to create
	// the consumer, stop it, then take the message by hand and never acknowledge it.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- agent.Run(runCtx) }()
	waitConsumer(t, b, builders.ConsumerName(p))
	stop()
	<-done
	req := types.BuildRequest{Pipeline: "web", Revision: "abc", Platform: p, Image: "127.0.0.1:1/acme/web:abc-amd64"}
	if _, err := b.Publish(ctx, types.BuildSubject(p), req.MsgID(), req); err != nil {
		t.Fatal(err)
	}
	cons, err := b.JS.Consumer(ctx, bus.StreamBuilds, builders.ConsumerName(p))
	if err != nil {
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
	if _, err := builders.NewAgent(nil, local, nil); err == nil {
		t.Error("no platforms: got no error")
	}
	p := types.MustPlatform("linux/amd64")
	if _, err := builders.NewAgent(nil, local, []types.Platform{p, p}); err == nil {
		t.Error("duplicate platform: got no error")
	}
	if _, err := builders.NewAgent(nil, local, []types.Platform{p}, builders.WithMaxAttempts(0)); err == nil {
		t.Error("zero attempts: got no error")
	}
}

// waitConsumer waits until the durable consumer exists.
func waitConsumer(t *testing.T, b *bus.Bus, name string) {
	t.Helper()
	err := testenv.WaitFor(10*time.Second, func() error {
		_, err := b.JS.Consumer(context.Background(), bus.StreamBuilds, name)
		return err
	})
	if err != nil {
		t.Fatalf("consumer %s not created within 10s: %v", name, err)
	}
}

// waitQueueEmpty waits until every build request was acknowledged or terminated.
func waitQueueEmpty(t *testing.T, b *bus.Bus) {
	t.Helper()
	var streamErr error
	err := testenv.WaitFor(10*time.Second, func() error {
		s, err := b.JS.Stream(context.Background(), bus.StreamBuilds)
		if err != nil {
			streamErr = err // not something to wait out
			return nil
		}
		if n := s.CachedInfo().State.Msgs; n != 0 {
			return fmt.Errorf("builds work queue still holds %d messages", n)
		}
		return nil
	})
	if streamErr != nil {
		t.Fatal(streamErr)
	}
	if err != nil {
		t.Error(err)
	}
}
