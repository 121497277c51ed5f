package advance

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// router routes to the fixture's advancer, a merger and a dispatcher of its pipeline,
// counting in m. The merger and the dispatcher are real, with a registry client that is
// never asked anything here.
func (f *fixture) router(t *testing.T, m *metrics.Metrics) *Router {
	t.Helper()
	merger, err := merge.New(f.store, registry.Client{}, []types.Pipeline{f.p})
	if err != nil {
		t.Fatal(err)
	}
	disp, err := builders.NewDispatcher(f.pub, registry.Client{}, []types.Pipeline{f.p})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouter(f.store, f.adv, merger, disp, WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// consumer is rt's consumer of subject.
func consumer(t *testing.T, rt *Router, subject string) bus.Consumer {
	t.Helper()
	for _, c := range rt.Consumers(time.Minute) {
		if c.Subject == subject {
			return c
		}
	}
	t.Fatalf("no consumer of %s", subject)
	return bus.Consumer{}
}

// encode is v as the first delivery of a message.
func encode(t *testing.T, v any) bus.Delivery {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Delivery{Data: data, Attempt: 1}
}

// TestRouterBuildsNothingForAMergeOnlyPipeline: a source change of a pipeline without a
// source (one stored before the configuration dropped it) is dropped for good; the revision
// gets no state and nothing is dispatched, so the arch tags CI pushes decide.
func TestRouterBuildsNothingForAMergeOnlyPipeline(t *testing.T) {
	ctx := context.Background()
	p := pipeline(false, "prod.example/app")
	if p.Builds() {
		t.Fatalf("the test pipeline has source %+v; want a merge-only one", p.Source)
	}
	f := newFixture(t, p)
	source := consumer(t, f.router(t, metrics.Discard()), types.SubjectSourceChanged)
	err := source.Handle(ctx, encode(t, types.SourceChanged{ID: "d1", Pipeline: p.Name, Repo: "https://git.example/app", Ref: "refs/heads/main", Revision: "r1"}))
	if !errors.Is(err, bus.ErrPermanent) || !errors.Is(err, builders.ErrMergeOnly) {
		t.Fatalf("got %v, want a permanent error (the message is dropped, never retried) saying the pipeline is merge-only", err)
	}
	if _, err := f.store.Get(ctx, p.Name, "r1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("revision state: got %v, want none (no build was dispatched)", err)
	}
	if steps := f.pub.take(); len(steps) != 0 {
		t.Errorf("published %+v, want nothing", steps)
	}
}

// TestRouterDropsAMessageOfAnUnknownPipeline: whichever subject it comes on, a message of
// a pipeline that is not configured is acknowledged (never redelivered), counted, and
// changes nothing.
func TestRouterDropsAMessageOfAnUnknownPipeline(t *testing.T) {
	ctx := context.Background()
	const gone = "gone"
	amd := types.MustPlatform("linux/amd64")
	tests := []struct {
		subject string
		msg     any
	}{
		{types.SubjectRegistryPush, types.RegistryPush{ID: "e1", Pipeline: gone, Revision: "r1", Platform: amd, Tag: "r1-amd64", Digest: index}},
		{types.SubjectSourceChanged, types.SourceChanged{ID: "d1", Pipeline: gone, Revision: "r1"}},
		{types.SubjectBuildResults, types.BuildResult{Request: types.BuildRequest{Pipeline: gone, Revision: "r1", Platform: amd}, Outcome: types.BuildSucceeded, Digest: index}},
		{types.SubjectReleaseTagged, types.ReleaseTagged{ID: "t1", Pipeline: gone, Revision: "r1", Tag: "v1"}},
		{types.SubjectSteps, types.Step{Kind: types.StepSign, Pipeline: gone, Revision: "r1", Index: index}},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			f := newFixture(t, pipeline(true, "prod.example/app"))
			m := metrics.Discard()
			c := consumer(t, f.router(t, m), tc.subject)
			if err := c.Handle(ctx, encode(t, tc.msg)); err != nil {
				t.Fatalf("got %v, want nil (acknowledged and dropped)", err)
			}
			if got := testutil.ToFloat64(m.UnknownPipeline.WithLabelValues(tc.subject)); got != 1 {
				t.Errorf("promoter_messages_unknown_pipeline_total{subject=%q} = %v, want 1", tc.subject, got)
			}
			if _, err := f.store.Get(ctx, gone, "r1"); !errors.Is(err, state.ErrNotFound) {
				t.Errorf("revision state: got %v, want none", err)
			}
			if steps := f.pub.take(); len(steps) != 0 {
				t.Errorf("published %+v, want nothing", steps)
			}
		})
	}
}

// TestRouteDecodesOnce: a handler's failure carries the message it failed on to the retry
// hook, which does not decode it again; the bus still sees the handler's error.
func TestRouteDecodesOnce(t *testing.T) {
	f := newFixture(t, pipeline(true, "prod.example/app"))
	rt := f.router(t, metrics.Discard())
	boom := errors.New("registry unavailable")
	want := types.Step{Kind: types.StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: "prod.example/app"}
	var got []types.Step
	c := route(rt, types.SubjectSteps, func(context.Context, types.Step) error { return boom },
		func(_ context.Context, s types.Step, failures int, _ time.Time, err error) {
			if failures != 2 || !errors.Is(err, boom) {
				t.Errorf("retrying: failures %d, error %v; want 2, %v", failures, err, boom)
			}
			got = append(got, s)
		})
	err := c.Handle(context.Background(), encode(t, want))
	if !errors.Is(err, boom) || err.Error() != boom.Error() {
		t.Fatalf("handle: got %v, want %v", err, boom)
	}
	c.Retrying(context.Background(), nil, 2, time.Now(), err) // no data: the message comes with the error
	if diff := cmp.Diff([]types.Step{want}, got); diff != "" {
		t.Errorf("messages the retry hook got (-want +got):\n%s", diff)
	}
	if err := c.Handle(context.Background(), bus.Delivery{Data: []byte(`{"kind":`), Attempt: 1}); !errors.Is(err, bus.ErrPermanent) {
		t.Errorf("malformed: got %v, want bus.ErrPermanent", err)
	}
}

// TestRegistryPushesAreDecodedOnce: the registry consumer decodes a push once, for the
// order of its revision and for its handler; a malformed one is refused for good.
func TestRegistryPushesAreDecodedOnce(t *testing.T) {
	parse := bus.ParseJSON(revisionKey)
	tests := []struct {
		name, data, wantKey string
		wantErr             error
	}{
		{"push", `{"pipeline":"web","revision":"abc123","platform":{"os":"linux"}}`, "web/abc123", nil},
		{"no revision", `{"pipeline":"web"}`, "", nil},
		{"malformed", `{"pipeline":`, "", bus.ErrPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, key, err := parse([]byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error: got %v, want %v", err, tt.wantErr)
			}
			if key != tt.wantKey {
				t.Errorf("key of %s: got %q, want %q", tt.data, key, tt.wantKey)
			}
			if _, ok := v.(types.RegistryPush); err == nil && !ok {
				t.Errorf("value: got %T, want types.RegistryPush", v)
			}
		})
	}
}
