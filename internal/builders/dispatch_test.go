package builders_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

func TestDispatchQueuesEachPlatformOnceAndSkipsWhatPromoterBuilt(t *testing.T) {
	ctx := context.Background()
	b := openBus(t)
	reg := testenv.StartRegistry(t)
	pipeline := types.Pipeline{
		Name:      "web",
		Source:    types.Source{Repo: "https://git.example/acme/web.git", Branch: "main"},
		Platforms: platforms("linux/amd64", "linux/arm64", "linux/arm/v7"),
		Build:     types.BuildSpec{Executor: types.ExecutorKubernetes, Context: ".", Dockerfile: "Dockerfile"},
		Staging:   types.Repository(reg.Host + "/acme/web"),
		ArchTag:   "{revision}-{arch}{variant}",
	}
	const rev = "3f2c1a9d5e7b8c0f1a2b3c4d5e6f708192a3b4c5"
	push := func(tag string) string {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(reg.Host + "/acme/web:" + tag)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	// linux/arm64 was built by promoter already (a redelivered webhook after a finished
	// build): the state records its build of the digest the tag holds.
	records := state.New(bustest.Revisions(t))
	built := push(rev + "-arm64")
	res := types.BuildResult{Request: types.BuildRequest{Pipeline: "web", Revision: rev, Platform: types.MustPlatform("linux/arm64")},
		Outcome: types.BuildSucceeded, Final: true, Attempt: 1, Job: "build-1", Digest: built}
	if _, err := records.Update(ctx, "web", rev, func(r *types.Revision) error { return r.RecordBuild(res, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	// linux/arm/v7 holds an image someone else pushed: promoter builds over it.
	push(rev + "-armv7")

	m := metrics.Discard()
	d, err := builders.NewDispatcher(b, registry.Client{}, []types.Pipeline{pipeline}, builders.WithMetrics(m), builders.WithRecords(records))
	if err != nil {
		t.Fatal(err)
	}
	ev := types.SourceChanged{ID: "delivery-1", Pipeline: "web", Repo: pipeline.Source.Repo, Ref: "refs/heads/main", Revision: rev}
	var queued [][]types.BuildRequest
	for range 2 {
		reqs, err := d.HandleSourceChanged(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, reqs)
	}
	want := []types.BuildRequest{
		{Pipeline: "web", Revision: rev, Platform: types.MustPlatform("linux/amd64"), SourceRepo: pipeline.Source.Repo,
			Context: ".", Dockerfile: "Dockerfile", Image: reg.Host + "/acme/web:" + rev + "-amd64"},
		{Pipeline: "web", Revision: rev, Platform: types.MustPlatform("linux/arm/v7"), SourceRepo: pipeline.Source.Repo,
			Context: ".", Dockerfile: "Dockerfile", Image: reg.Host + "/acme/web:" + rev + "-armv7"},
	}
	for i, got := range queued {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("call %d: queued requests (-want +got):\n%s", i+1, diff)
		}
	}

	// The work queue holds exactly one request per platform to build, on its subject.
	stored := bustest.Stored(t, b, bus.StreamBuilds, "promoter.builds.>")
	wantSubjects := map[string]uint64{"promoter.builds.linux.amd64": 1, "promoter.builds.linux.arm.v7": 1}
	if diff := cmp.Diff(wantSubjects, bustest.Subjects(stored)); diff != "" {
		t.Errorf("messages per subject on %s (-want +got):\n%s", bus.StreamBuilds, diff)
	}
	armv7 := bustest.Stored(t, b, bus.StreamBuilds, "promoter.builds.linux.arm.v7")
	if len(armv7) == 0 {
		t.Fatal("no request for linux/arm/v7 on the queue")
	}
	msg := armv7[len(armv7)-1]
	var got types.BuildRequest
	if err := json.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[1], got); diff != "" {
		t.Errorf("request on the queue (-want +got):\n%s", diff)
	}
	if msg.MsgID != want[1].MsgID() {
		t.Errorf("message id: got %q, want %q", msg.MsgID, want[1].MsgID())
	}

	for _, c := range []struct {
		platform, outcome string
		want              float64
	}{
		{"linux/amd64", "dispatched", 1}, {"linux/amd64", "duplicate", 1},
		{"linux/arm64", "exists", 2}, {"linux/arm64", "dispatched", 0},
		{"linux/arm/v7", "dispatched", 1},
	} {
		if got := testutil.ToFloat64(m.BuildsDispatched.WithLabelValues(c.platform, c.outcome)); got != c.want {
			t.Errorf("builds dispatched{%s,%s}: got %v, want %v", c.platform, c.outcome, got, c.want)
		}
	}
}

func TestDispatchErrors(t *testing.T) {
	b := openBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := builders.NewDispatcher(b, registry.Client{}, []types.Pipeline{{
		Name: "web", Source: types.Source{Repo: "https://git.example/acme/web.git", Branch: "main"},
		Platforms: platforms("linux/amd64"), Staging: "127.0.0.1:1/acme/web", ArchTag: "{revision}-{arch}",
	}, {
		// Merge-only: no source, so nothing is built and the registry is not even asked.
		Name: "ci", Platforms: platforms("linux/amd64"), Staging: "127.0.0.1:1/acme/ci", ArchTag: "{revision}-{arch}",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.HandleSourceChanged(ctx, types.SourceChanged{ID: "x", Pipeline: "api", Revision: "abc"}); !errors.Is(err, builders.ErrUnknownPipeline) {
		t.Errorf("unknown pipeline: got %v, want ErrUnknownPipeline", err)
	}
	if reqs, err := d.HandleSourceChanged(ctx, types.SourceChanged{ID: "z", Pipeline: "ci", Revision: "abc"}); !errors.Is(err, builders.ErrMergeOnly) || len(reqs) != 0 {
		t.Errorf("merge-only pipeline: got %v, %v; want ErrMergeOnly and nothing queued", reqs, err)
	}
	if reqs := builders.Requests(types.Pipeline{Name: "ci", Platforms: platforms("linux/amd64")}, "abc"); len(reqs) != 0 {
		t.Errorf("Requests of a merge-only pipeline: got %+v, want none", reqs)
	}
	// An unreachable staging registry is an error, never a reason to rebuild.
	reqs, err := d.HandleSourceChanged(ctx, types.SourceChanged{ID: "y", Pipeline: "web", Revision: "abc"})
	if err == nil || len(reqs) != 0 {
		t.Fatalf("unreachable registry: got %v, %v; want an error and nothing queued", reqs, err)
	}
	t.Log(err)
}

// trusting is a verify policy (sign.Policy is tested on its own) that accepts the digests
// in ok.
type trusting struct{ ok map[string]bool }

func (p trusting) Verify(_ context.Context, ref string) (types.Evidence, error) {
	d := ref[strings.LastIndex(ref, "@")+1:]
	if !p.ok[d] {
		return types.Evidence{}, fmt.Errorf("%w: %s", types.ErrUntrusted, ref)
	}
	return types.Evidence{Kind: types.EvidenceSignature, Digest: d, Signer: "key ci.pub"}, nil
}

// TestDispatchSkipsOnlyWhatThePolicyAccepts: an arch tag no build of promoter's recorded is
// built over unless the pipeline's verify policy accepts its image.
func TestDispatchSkipsOnlyWhatThePolicyAccepts(t *testing.T) {
	ctx := context.Background()
	b := openBus(t)
	reg := testenv.StartRegistry(t)
	pipeline := types.Pipeline{
		Name: "web", Source: types.Source{Repo: "https://git.example/acme/web.git", Branch: "main"},
		Platforms: platforms("linux/amd64", "linux/arm64"), Build: types.BuildSpec{Executor: types.ExecutorKubernetes},
		Staging: types.Repository(reg.Host + "/acme/web"), ArchTag: "{revision}-{arch}",
	}
	const rev = "5e1af6a5d5e7b8c0f1a2b3c4d5e6f708192a3b4c"
	signed, unsigned := testenv.PlatformImage(t, "linux/amd64", time.Unix(0, 0)), testenv.PlatformImage(t, "linux/arm64", time.Unix(0, 0))
	testenv.Push(t, reg.Host+"/acme/web:"+rev+"-amd64", signed)
	testenv.Push(t, reg.Host+"/acme/web:"+rev+"-arm64", unsigned)
	policy := trusting{ok: map[string]bool{testenv.Digest(t, signed): true}}
	d, err := builders.NewDispatcher(b, registry.Client{}, []types.Pipeline{pipeline}, builders.WithPolicies(map[string]builders.Policy{"web": policy}))
	if err != nil {
		t.Fatal(err)
	}
	queued, err := d.HandleSourceChanged(ctx, types.SourceChanged{ID: "d", Pipeline: "web", Revision: rev})
	if err != nil {
		t.Fatal(err)
	}
	if len(queued) != 1 || queued[0].Platform.String() != "linux/arm64" {
		t.Errorf("queued %+v, want only linux/arm64 (its image is not signed)", queued)
	}
}
