package advance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

const index = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// published records the steps an Advancer publishes, in order.
type published struct {
	mu    sync.Mutex
	steps []types.Step
}

func (p *published) Publish(_ context.Context, subject, msgID string, v any) (bool, error) {
	s, ok := v.(types.Step)
	if !ok || subject != types.SubjectSteps || msgID != s.MsgID() {
		return false, fmt.Errorf("unexpected publish %s %s %T", subject, msgID, v)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = append(p.steps, s)
	return false, nil
}

func (p *published) take() []types.Step {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.steps
	p.steps = nil
	return s
}

// signer and promoter record their calls and answer err.
type signer struct {
	refs []string
	err  error
}

func (s *signer) Sign(_ context.Context, ref string) ([]sign.Signed, error) {
	s.refs = append(s.refs, ref)
	return nil, s.err
}

type promoter struct {
	calls    []string // revision promotions (promote.DestinationTarget): "src tag dest"
	releases []string // release promotions (promote.ReleaseTarget): "src dest:tag"
	// err answers a revision promotion to dest by err[dest], a release by err[dest:tag].
	err map[string]error
	// revisions are the revisions merged (fixture.merged): a target tagged with one is a
	// revision promotion, any other a release.
	revisions map[string]bool
}

func (p *promoter) Promote(_ context.Context, src string, targets []promote.Target) ([]*promote.Result, []error) {
	results, errs := make([]*promote.Result, len(targets)), make([]error, len(targets))
	for i, t := range targets {
		colon := strings.LastIndex(t.Ref, ":") // both targets name a tag
		dest, tag := t.Ref[:colon], t.Ref[colon+1:]
		key := t.Ref
		if p.revisions[tag] {
			p.calls = append(p.calls, src+" "+tag+" "+dest)
			key = dest
		} else {
			p.releases = append(p.releases, src+" "+t.Ref)
		}
		if errs[i] = p.err[key]; errs[i] == nil {
			results[i] = &promote.Result{Destination: t.Ref, Digest: index}
		}
	}
	return results, errs
}

type fixture struct {
	store *state.Store
	pub   *published
	sign  *signer
	prom  *promoter
	adv   *Advancer
	p     types.Pipeline
}

func newFixture(t *testing.T, p types.Pipeline) *fixture {
	t.Helper()
	f := &fixture{store: state.New(bustest.Revisions(t)), pub: &published{}, sign: &signer{}, prom: &promoter{err: map[string]error{}, revisions: map[string]bool{}}, p: p}
	var err error
	if f.adv, err = New(f.store, f.pub, []types.Pipeline{p}, f.sign, f.prom); err != nil {
		t.Fatal(err)
	}
	return f
}

// merged stores revision rev of the fixture's pipeline as merged into index.
func (f *fixture) merged(t *testing.T, rev string) *types.Revision {
	t.Helper()
	f.prom.revisions[rev] = true
	r, err := f.store.Update(context.Background(), f.p.Name, rev, func(r *types.Revision) error {
		r.Platforms = map[string]types.PlatformState{"linux/amd64": {Tag: rev + "-amd64", Digest: "sha256:aa"}}
		r.Phase, r.Index = types.PhaseMerged, index
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) get(t *testing.T, rev string) *types.Revision {
	t.Helper()
	r, err := f.store.Get(context.Background(), f.p.Name, rev)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pipeline(sign bool, dests ...string) types.Pipeline {
	p := types.Pipeline{Name: "app", Staging: "staging.example/app", Sign: sign, ArchTag: types.DefaultArchTag,
		Platforms: []types.Platform{types.MustPlatform("linux/amd64")}}
	for _, d := range dests {
		p.Promote = append(p.Promote, types.Destination{To: types.Repository(d)})
	}
	return p
}

// handle delivers steps to the fixture's Advancer, in order, as the bus would.
func (f *fixture) handle(t *testing.T, steps ...types.Step) {
	t.Helper()
	for _, s := range steps {
		if err := f.adv.HandleStep(context.Background(), s); err != nil {
			t.Fatalf("HandleStep(%+v): %v", s, err)
		}
	}
}

// checkSigned: rev's index was signed once, in staging, and its state says so.
func (f *fixture) checkSigned(t *testing.T, rev string) {
	t.Helper()
	if want := "staging.example/app@" + index; len(f.sign.refs) != 1 || f.sign.refs[0] != want {
		t.Fatalf("signed %v, want [%s]", f.sign.refs, want)
	}
	if got := f.get(t, rev); got.Phase != types.PhaseSigned || !got.Signed {
		t.Fatalf("after signing: %s signed=%v, want %s signed=true", got.Phase, got.Signed, types.PhaseSigned)
	}
}

// checkPromoted: rev's promotion to dest is done, of index, and rev is in phase want.
func (f *fixture) checkPromoted(t *testing.T, rev, dest string, want types.Phase) {
	t.Helper()
	if got := f.get(t, rev); got.Phase != want || !got.Promotions[dest].Done || got.Promotions[dest].Digest != index {
		t.Fatalf("after promoting %s: phase %s, promotion %+v; want %s and done", dest, got.Phase, got.Promotions[dest], want)
	}
}

// checkPromotionSteps: steps are one promotion per destination, in the order of dests.
func checkPromotionSteps(t *testing.T, steps []types.Step, dests ...string) {
	t.Helper()
	ok := len(steps) == len(dests)
	for i := 0; ok && i < len(dests); i++ {
		ok = steps[i].Destination == dests[i]
	}
	if !ok {
		t.Fatalf("after signing: published %+v, want a promotion per destination %v", steps, dests)
	}
}

// TestAdvancerSignsThenPromotesEachDestination follows a merged revision through every
// step, as the bus would deliver them.
func TestAdvancerSignsThenPromotesEachDestination(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pipeline(true, "prod.example/app", "mirror.example/app"))
	r := f.merged(t, "r1")
	if err := f.adv.Next(ctx, r); err != nil {
		t.Fatal(err)
	}
	steps := f.pub.take()
	if len(steps) != 1 || steps[0].Kind != types.StepSign || steps[0].Index != index {
		t.Fatalf("after the merge: published %+v, want one sign step", steps)
	}
	// A promotion delivered before signing is done waits for it.
	f.handle(t, types.Step{Kind: types.StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: "prod.example/app"})
	if len(f.prom.calls) != 0 {
		t.Fatalf("promoted before signing: %v, want no promotion", f.prom.calls)
	}
	f.pub.take()
	f.handle(t, steps[0])
	f.checkSigned(t, "r1")
	steps = f.pub.take()
	checkPromotionSteps(t, steps, "prod.example/app", "mirror.example/app")
	for i, s := range steps {
		f.handle(t, s)
		want := types.PhaseSigned
		if i == len(steps)-1 {
			want = types.PhasePromoted
		}
		f.checkPromoted(t, "r1", s.Destination, want)
	}
	if want := "staging.example/app@" + index + " r1 prod.example/app"; f.prom.calls[0] != want {
		t.Errorf("promoted %q, want %q", f.prom.calls[0], want)
	}
	// Redelivered steps of a promoted revision do nothing.
	f.handle(t, steps...)
	if len(f.prom.calls) != 2 || len(f.sign.refs) != 1 {
		t.Errorf("redelivery repeated work: promotions %v, signatures %v; want 2 promotions, 1 signature", f.prom.calls, f.sign.refs)
	}
}

func TestAdvancerStepOutcomes(t *testing.T) {
	ctx := context.Background()
	const dest = "prod.example/app"
	promote := types.Step{Kind: types.StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: dest}
	tests := []struct {
		name    string
		p       types.Pipeline
		step    types.Step
		promErr error
		// wantErr is matched with errors.Is; wantPhase is the phase afterwards.
		wantErr   error
		wantPhase types.Phase
		wantCalls int
	}{
		{name: "promoted", p: pipeline(false, dest), step: promote, wantPhase: types.PhasePromoted, wantCalls: 1},
		{name: "destination tag points elsewhere", p: pipeline(false, dest), step: promote,
			promErr: fmt.Errorf("prod: %w", types.ErrTagImmutable), wantPhase: types.PhaseConflicted, wantCalls: 1},
		{name: "registry down is retried", p: pipeline(false, dest), step: promote,
			promErr: errors.New("503 Service Unavailable"), wantErr: errAny, wantPhase: types.PhaseMerged, wantCalls: 1},
		{name: "a step of another index", p: pipeline(false, dest), step: withIndex(promote, "sha256:other"), wantPhase: types.PhaseMerged},
		// The router acknowledges it with a log line and a count (TestRouterDropsAMessageOfAnUnknownPipeline).
		{name: "a pipeline no longer configured", p: pipeline(false, dest), step: withPipeline(promote, "gone"),
			wantErr: types.ErrUnknownPipeline, wantPhase: types.PhaseMerged},
		{name: "a destination no longer configured", p: pipeline(false, "other.example/app"), step: promote, wantPhase: types.PhaseMerged},
		{name: "an unknown step", p: pipeline(false, dest), step: types.Step{Kind: "rebuild", Pipeline: "app", Revision: "r1", Index: index},
			wantErr: bus.ErrPermanent, wantPhase: types.PhaseMerged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.p)
			f.merged(t, "r1")
			f.prom.err[dest] = tc.promErr
			err := f.adv.HandleStep(ctx, tc.step)
			switch {
			case tc.wantErr == errAny && err == nil, tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("HandleStep: %v, want %v", err, tc.wantErr)
			}
			got := f.get(t, "r1")
			if got.Phase != tc.wantPhase || len(f.prom.calls) != tc.wantCalls {
				t.Fatalf("phase %s after %d promotions, want %s after %d", got.Phase, len(f.prom.calls), tc.wantPhase, tc.wantCalls)
			}
			if tc.wantPhase == types.PhaseConflicted && got.Reason == "" {
				t.Errorf("a conflicted revision must say why")
			}
		})
	}
}

// errAny in a test table means "some error".
var errAny = errors.New("any error")

func withIndex(s types.Step, idx string) types.Step     { s.Index = idx; return s }
func withPipeline(s types.Step, name string) types.Step { s.Pipeline = name; return s }

// TestAdvancerRecordsRetries: a failed step says in the revision state when it comes back.
func TestAdvancerRecordsRetries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pipeline(false, "prod.example/app"))
	f.merged(t, "r1")
	next := time.Now().Add(4 * time.Second).UTC()
	s := types.Step{Kind: types.StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: "prod.example/app"}
	f.adv.StepRetrying(ctx, s, 3, next, errors.New("503 Service Unavailable"))
	got := f.get(t, "r1").Promotions["prod.example/app"]
	if got.Done || got.Retry.Failures != 3 || got.Error != "503 Service Unavailable" || !got.Retry.Next.Equal(next) {
		t.Fatalf("promotion %+v, want the retry recorded", got)
	}
}

// TestAdvancerNextAndResume: a merged revision with nothing to do is promoted at once;
// Resume republishes the steps of revisions with work left, and only those.
func TestAdvancerNextAndResume(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pipeline(false))
	r := f.merged(t, "r1")
	if err := f.adv.Next(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, "r1"); got.Phase != types.PhasePromoted {
		t.Fatalf("no destinations: phase %s, want promoted", got.Phase)
	}

	g := newFixture(t, pipeline(true, "prod.example/app"))
	waiting := &types.Revision{Pipeline: "app", Revision: "r0", Phase: types.PhaseWaiting}
	signed := &types.Revision{Pipeline: "app", Revision: "r2", Phase: types.PhaseSigned, Index: index, Signed: true}
	merged := &types.Revision{Pipeline: "app", Revision: "r3", Phase: types.PhaseMerged, Index: index}
	done := &types.Revision{Pipeline: "app", Revision: "r4", Phase: types.PhasePromoted, Index: index, Signed: true}
	if err := g.adv.Resume(ctx, []*types.Revision{waiting, signed, merged, done}); err != nil {
		t.Fatal(err)
	}
	steps := g.pub.take()
	if len(steps) != 2 || steps[0].Revision != "r2" || steps[0].Kind != types.StepPromote || steps[1].Revision != "r3" || steps[1].Kind != types.StepSign {
		t.Fatalf("resumed %+v, want r2's promotion and r3's signing", steps)
	}
}

func TestNewRefusesASigningPipelineWithoutASigner(t *testing.T) {
	if _, err := New(nil, &published{}, []types.Pipeline{pipeline(true)}, nil, &promoter{}); err == nil {
		t.Fatal("New accepted a signing pipeline without a signer")
	}
}
