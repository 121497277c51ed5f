package types

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestTransitions applies every transition to a revision in every phase: the phase it
// leads to, or ErrNoChange (nothing written), or ErrTransition (cannot happen there).
func TestTransitions(t *testing.T) {
	const (
		amd, arm = "linux/amd64", "linux/arm64"
		d1, d2   = "sha256:1111", "sha256:2222"
		index    = "sha256:index"
	)
	platforms := []string{amd, arm}
	tags := map[string]string{amd: "r1-amd64", arm: "r1-arm64"}
	at := time.Unix(1700000000, 0).UTC()
	dests := []string{"prod.example/app", "mirror.example/app"}

	// rev builds a revision in phase ph, with what that phase implies: digests from
	// waiting on, an index from merged on.
	rev := func(ph Phase) *Revision {
		r := &Revision{Pipeline: "app", Revision: "r1", Phase: ph, Platforms: map[string]PlatformState{}}
		if ph == "" {
			return r
		}
		r.ExpectPlatforms(tags)
		if ph != PhaseBuilding {
			r.Platforms[amd] = PlatformState{Tag: tags[amd], Digest: d1}
		}
		switch ph {
		case PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted:
			r.Platforms[arm] = PlatformState{Tag: tags[arm], Digest: d2}
			r.Index = index
		}
		r.Signed = ph == PhaseSigned || ph == PhasePromoted
		return r
	}
	all := []Phase{"", PhaseBuilding, PhaseWaiting, PhaseMerged, PhaseSigned, PhasePromoted, PhaseFailed, PhaseConflicted}

	type transition struct {
		name string
		do   func(r *Revision) error
		// want is the phase after the transition from each phase; a phase missing here
		// must give wantErr[from].
		want    map[Phase]Phase
		wantErr map[Phase]error
	}
	unchanged := func(phs ...Phase) map[Phase]error {
		m := map[Phase]error{}
		for _, p := range phs {
			m[p] = ErrNoChange
		}
		return m
	}
	with := func(m map[Phase]error, ph Phase, err error) map[Phase]error { m[ph] = err; return m }
	fails := BuildResult{Request: BuildRequest{Platform: MustPlatform(amd), Image: "staging/app:r1-amd64"}, Outcome: BuildFailed, Reason: "exit 1", Final: true, Attempt: 3, Job: "j"}
	succeeds := BuildResult{Request: fails.Request, Outcome: BuildSucceeded, Final: true, Attempt: 1}

	tests := []transition{
		{
			name:    "builds dispatched",
			do:      func(r *Revision) error { return r.Dispatched(tags) },
			want:    map[Phase]Phase{"": PhaseBuilding},
			wantErr: unchanged(PhaseBuilding, PhaseWaiting, PhaseMerged, PhaseSigned, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name: "an arch tag pushed",
			do: func(r *Revision) error {
				_, err := r.RecordDigests("staging/app", platforms, map[string]string{amd: d1, arm: d2})
				return err
			},
			// Waiting already held d1; merged ones hold both: nothing new.
			want:    map[Phase]Phase{"": PhaseWaiting, PhaseBuilding: PhaseWaiting, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseWaiting},
			wantErr: unchanged(PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name: "nothing in the registry",
			do: func(r *Revision) error {
				_, err := r.RecordDigests("staging/app", platforms, map[string]string{})
				return err
			},
			// A waiting revision whose tag was deleted follows the registry; the others
			// have nothing to forget, or are pinned by their index.
			want:    map[Phase]Phase{PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseWaiting},
			wantErr: unchanged("", PhaseBuilding, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name: "a merged arch tag moved",
			do: func(r *Revision) error {
				_, err := r.RecordDigests("staging/app", platforms, map[string]string{amd: "sha256:moved", arm: d2})
				return err
			},
			want:    map[Phase]Phase{"": PhaseWaiting, PhaseBuilding: PhaseWaiting, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseWaiting, PhaseMerged: PhaseConflicted, PhaseSigned: PhaseConflicted, PhasePromoted: PhaseConflicted},
			wantErr: unchanged(PhaseConflicted),
		},
		{
			name:    "a build failed for good",
			do:      func(r *Revision) error { return r.RecordBuild(fails) },
			want:    map[Phase]Phase{"": PhaseFailed, PhaseBuilding: PhaseFailed, PhaseWaiting: PhaseFailed, PhaseFailed: PhaseFailed, PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: map[Phase]error{},
		},
		{
			name:    "a build succeeded",
			do:      func(r *Revision) error { return r.RecordBuild(succeeds) },
			want:    map[Phase]Phase{"": "", PhaseBuilding: PhaseBuilding, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseFailed, PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: map[Phase]error{},
		},
		{
			name: "merged",
			do: func(r *Revision) error {
				_, err := r.FinishMerge("lease", map[string]string{amd: d1, arm: d2}, PhaseMerged, "", index)
				return err
			},
			want:    map[Phase]Phase{"": PhaseMerged, PhaseBuilding: PhaseMerged, PhaseWaiting: PhaseMerged, PhaseFailed: PhaseMerged},
			wantErr: unchanged(PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name: "the platform check failed",
			do: func(r *Revision) error {
				_, err := r.FinishMerge("lease", map[string]string{amd: d1}, PhaseFailed, "wrong platform", "")
				return err
			},
			// Building has no digest for amd64: the input moved, and nothing is recorded.
			want:    map[Phase]Phase{PhaseWaiting: PhaseFailed, PhaseFailed: PhaseFailed},
			wantErr: unchanged("", PhaseBuilding, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name: "a merge cannot end signed",
			do: func(r *Revision) error {
				_, err := r.FinishMerge("lease", nil, PhaseSigned, "", "")
				return err
			},
			wantErr: allErr(all, ErrTransition),
		},
		{
			name:    "signed",
			do:      func(r *Revision) error { return r.MarkSigned() },
			want:    map[Phase]Phase{PhaseMerged: PhaseSigned, PhaseConflicted: PhaseConflicted},
			wantErr: with(with(with(with(unchanged(PhaseSigned, PhasePromoted), "", ErrTransition), PhaseBuilding, ErrTransition), PhaseWaiting, ErrTransition), PhaseFailed, ErrTransition),
		},
		{
			name: "promoted to one of two destinations",
			do: func(r *Revision) error {
				_, err := r.PromotedTo(dests[0], index, at, dests)
				return err
			},
			want:    map[Phase]Phase{PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name: "promoted to the last destination",
			do: func(r *Revision) error {
				_, err := r.PromotedTo(dests[0], index, at, dests[:1])
				return err
			},
			want:    map[Phase]Phase{PhaseMerged: PhasePromoted, PhaseSigned: PhasePromoted, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name:    "a destination tag points elsewhere",
			do:      func(r *Revision) error { return r.PromotionConflicted(dests[0], "tag moved", at) },
			want:    map[Phase]Phase{PhaseMerged: PhaseConflicted, PhaseSigned: PhaseConflicted, PhasePromoted: PhaseConflicted, PhaseConflicted: PhaseConflicted},
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name: "nothing left to do, signing required",
			do:   func(r *Revision) error { return r.Complete(true, nil) },
			want: map[Phase]Phase{PhaseSigned: PhasePromoted},
			// Merged is not signed yet.
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhaseMerged, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name:    "nothing left to do, no signing",
			do:      func(r *Revision) error { return r.Complete(false, nil) },
			want:    map[Phase]Phase{PhaseMerged: PhasePromoted, PhaseSigned: PhasePromoted},
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name:    "destinations left",
			do:      func(r *Revision) error { return r.Complete(false, dests) },
			wantErr: unchanged(all...),
		},
		{
			name:    "a merge will be retried",
			do:      func(r *Revision) error { return r.MergeRetrying(Retry{Failures: 1, Error: "503"}) },
			want:    map[Phase]Phase{PhaseBuilding: PhaseBuilding, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseFailed},
			wantErr: unchanged("", PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name: "a promotion will be retried",
			do: func(r *Revision) error {
				return r.StepRetrying(Step{Kind: StepPromote, Index: index, Destination: dests[0]}, Retry{Failures: 2, Error: "503"}, at)
			},
			want:    map[Phase]Phase{PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhaseFailed),
		},
		{
			name: "a step of another index will be retried",
			do: func(r *Revision) error {
				return r.StepRetrying(Step{Kind: StepSign, Index: "sha256:other"}, Retry{Failures: 1}, at)
			},
			wantErr: unchanged(all...),
		},
		{
			name: "a retry of an unknown step",
			do: func(r *Revision) error {
				return r.StepRetrying(Step{Kind: "rebuild", Index: index}, Retry{Failures: 1}, at)
			},
			wantErr: with(with(with(with(unchanged("", PhaseBuilding, PhaseWaiting, PhaseFailed),
				PhaseMerged, ErrTransition), PhaseSigned, ErrTransition), PhasePromoted, ErrTransition), PhaseConflicted, ErrTransition),
		},
	}
	for _, tc := range tests {
		for _, from := range all {
			t.Run(tc.name+"/from "+string(from), func(t *testing.T) {
				want, legal := tc.want[from]
				wantErr := tc.wantErr[from]
				if legal == (wantErr != nil) {
					t.Fatalf("test table: from %q needs exactly one of want and wantErr", from)
				}
				r := rev(from)
				err := tc.do(r)
				if !errors.Is(err, wantErr) || (err != nil && wantErr == nil) {
					t.Fatalf("got error %v, want %v", err, wantErr)
				}
				if legal && r.Phase != want {
					t.Errorf("phase %q → %q, want %q", from, r.Phase, want)
				}
				if errors.Is(err, ErrTransition) && !strings.Contains(err.Error(), "app/r1") {
					t.Errorf("error %q does not name the revision", err)
				}
			})
		}
	}
}

func allErr(phs []Phase, err error) map[Phase]error {
	m := map[Phase]error{}
	for _, p := range phs {
		m[p] = err
	}
	return m
}

// TestTransitionDetails checks what the phase table does not show: reasons, retries,
// leases and promotions.
func TestTransitionDetails(t *testing.T) {
	const amd = "linux/amd64"
	t.Run("a moved merged tag names both digests", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r1", Phase: PhaseMerged, Index: "sha256:i",
			Platforms: map[string]PlatformState{amd: {Tag: "r1-amd64", Digest: "sha256:old"}}}
		v, err := r.RecordDigests("staging/app", []string{amd}, map[string]string{amd: "sha256:new"})
		if err != nil || v == "" || r.Reason != v || !strings.Contains(v, "staging/app:r1-amd64 now points at sha256:new") || !strings.Contains(v, "merged with sha256:old") {
			t.Fatalf("violation %q, reason %q, %v", v, r.Reason, err)
		}
	})
	t.Run("a new image clears a failure and its retry", func(t *testing.T) {
		r := &Revision{Phase: PhaseFailed, Reason: "wrong platform", MergeRetry: Retry{Failures: 2},
			Platforms: map[string]PlatformState{amd: {Digest: "sha256:a"}}}
		if _, err := r.RecordDigests("s", []string{amd}, map[string]string{amd: "sha256:b"}); err != nil {
			t.Fatal(err)
		}
		if r.Phase != PhaseWaiting || r.Reason != "" || r.MergeRetry.Failures != 0 {
			t.Errorf("got %+v", r)
		}
	})
	t.Run("a final build failure says which build", func(t *testing.T) {
		r := &Revision{Phase: PhaseBuilding}
		res := BuildResult{Request: BuildRequest{Platform: MustPlatform(amd), Image: "s:r1-amd64"}, Outcome: BuildFailed, Reason: "exit 1", Final: true, Attempt: 2, Job: "build-1"}
		if err := r.RecordBuild(res); err != nil {
			t.Fatal(err)
		}
		if want := "build of linux/amd64 failed after 2 attempts (job build-1): exit 1"; r.Reason != want || r.Platforms[amd].Tag != "s:r1-amd64" {
			t.Errorf("reason %q, platforms %+v; want %q", r.Reason, r.Platforms, want)
		}
		if err := r.RecordBuild(res); !errors.Is(err, ErrNoChange) {
			t.Errorf("the same result again: %v, want ErrNoChange", err)
		}
	})
	t.Run("a failure about a moved input only releases the lease", func(t *testing.T) {
		r := &Revision{Phase: PhaseWaiting, Merging: &Lease{ID: "mine"}, Platforms: map[string]PlatformState{amd: {Digest: "sha256:new"}}}
		moved, err := r.FinishMerge("mine", map[string]string{amd: "sha256:old"}, PhaseFailed, "wrong platform", "")
		if !moved || err != nil || r.Merging != nil || r.Phase != PhaseWaiting {
			t.Fatalf("moved %v, %v, %+v", moved, err, r)
		}
		r.Merging = &Lease{ID: "theirs"}
		if _, err := r.FinishMerge("mine", map[string]string{amd: "sha256:old"}, PhaseFailed, "x", ""); !errors.Is(err, ErrNoChange) || r.Merging.ID != "theirs" {
			t.Fatalf("another's lease: %v, %+v", err, r.Merging)
		}
	})
	t.Run("an index is recorded with the digests it was built from", func(t *testing.T) {
		r := &Revision{Phase: PhaseWaiting, Merging: &Lease{ID: "mine"}, MergeRetry: Retry{Failures: 1}, Platforms: map[string]PlatformState{amd: {Digest: "sha256:new"}}}
		moved, err := r.FinishMerge("mine", map[string]string{amd: "sha256:old"}, PhaseMerged, "", "sha256:i")
		if !moved || err != nil || r.Platforms[amd].Digest != "sha256:old" || r.Index != "sha256:i" || r.Merging != nil || r.MergeRetry.Failures != 0 {
			t.Fatalf("moved %v, %v, %+v", moved, err, r)
		}
	})
	t.Run("a retried step keeps what it was done before", func(t *testing.T) {
		r := &Revision{Phase: PhaseSigned, Index: "sha256:i", Signed: true,
			Promotions: map[string]Promotion{"a": {Done: true, Digest: "sha256:i"}}}
		at := time.Unix(1700000000, 0).UTC()
		retry := Retry{Failures: 3, Error: "503 Service Unavailable", Next: at.Add(time.Minute)}
		if err := r.StepRetrying(Step{Kind: StepPromote, Index: "sha256:i", Destination: "b"}, retry, at); err != nil {
			t.Fatal(err)
		}
		if got := r.Promotions["b"]; got.Done || got.Error != retry.Error || !got.At.Equal(at) || got.Retry != retry {
			t.Errorf("promotion b = %+v, want the retry recorded", got)
		}
		if !r.Promotions["a"].Done {
			t.Errorf("promotion a lost: %+v", r.Promotions["a"])
		}
		if err := r.StepRetrying(Step{Kind: StepSign, Index: "sha256:i"}, retry, at); err != nil || r.SignRetry != retry {
			t.Errorf("sign retry: %v, %+v", err, r.SignRetry)
		}
	})
	t.Run("signing clears its retry", func(t *testing.T) {
		r := &Revision{Phase: PhaseMerged, Index: "sha256:i", SignRetry: Retry{Failures: 3}}
		if err := r.MarkSigned(); err != nil || !r.Signed || r.SignRetry.Failures != 0 {
			t.Fatalf("%v %+v", err, r)
		}
	})
	t.Run("promotions are recorded, a conflict with its reason", func(t *testing.T) {
		at := time.Unix(1, 0).UTC()
		r := &Revision{Phase: PhaseSigned, Index: "sha256:i", Signed: true}
		all, err := r.PromotedTo("a", "sha256:i", at, []string{"a", "b"})
		if err != nil || all || !r.Promotions["a"].Done || r.Promotions["a"].Digest != "sha256:i" || !r.Promotions["a"].At.Equal(at) {
			t.Fatalf("%v %v %+v", all, err, r.Promotions)
		}
		if err := r.PromotionConflicted("b", "b:r1 points elsewhere", at); err != nil || r.Phase != PhaseConflicted || r.Reason != "b:r1 points elsewhere" || r.Promotions["b"].Error == "" {
			t.Fatalf("%v %+v", err, r)
		}
	})
}
