package types

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
		// event is the method of Revision the case calls, as the doc's table names it.
		event string
		do    func(r *Revision) error
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
			event:   "Dispatched",
			do:      func(r *Revision) error { return r.Dispatched(tags, at) },
			want:    map[Phase]Phase{"": PhaseBuilding},
			wantErr: unchanged(PhaseBuilding, PhaseWaiting, PhaseMerged, PhaseSigned, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name:  "an arch tag pushed",
			event: "RecordDigests",
			do: func(r *Revision) error {
				_, err := r.RecordDigests("staging/app", platforms, map[string]string{amd: d1, arm: d2}, at)
				return err
			},
			// Waiting already held d1; merged ones hold both: nothing new.
			want:    map[Phase]Phase{"": PhaseWaiting, PhaseBuilding: PhaseWaiting, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseWaiting},
			wantErr: unchanged(PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:  "nothing in the registry",
			event: "RecordDigests",
			do: func(r *Revision) error {
				_, err := r.RecordDigests("staging/app", platforms, map[string]string{}, at)
				return err
			},
			// A waiting revision whose tag was deleted follows the registry; the others
			// have nothing to forget, or are pinned by their index.
			want:    map[Phase]Phase{PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseWaiting},
			wantErr: unchanged("", PhaseBuilding, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:  "a merged arch tag moved",
			event: "RecordDigests",
			do: func(r *Revision) error {
				_, err := r.RecordDigests("staging/app", platforms, map[string]string{amd: "sha256:moved", arm: d2}, at)
				return err
			},
			want:    map[Phase]Phase{"": PhaseWaiting, PhaseBuilding: PhaseWaiting, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseWaiting, PhaseMerged: PhaseConflicted, PhaseSigned: PhaseConflicted, PhasePromoted: PhaseConflicted},
			wantErr: unchanged(PhaseConflicted),
		},
		{
			name:    "a build failed for good",
			event:   "RecordBuild",
			do:      func(r *Revision) error { return r.RecordBuild(fails, at) },
			want:    map[Phase]Phase{"": PhaseFailed, PhaseBuilding: PhaseFailed, PhaseWaiting: PhaseFailed, PhaseFailed: PhaseFailed, PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: map[Phase]error{},
		},
		{
			name:    "a build succeeded",
			event:   "RecordBuild",
			do:      func(r *Revision) error { return r.RecordBuild(succeeds, at) },
			want:    map[Phase]Phase{"": "", PhaseBuilding: PhaseBuilding, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseFailed, PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: map[Phase]error{},
		},
		{
			name:  "merge refused for want of evidence",
			event: "FinishUntrusted",
			do: func(r *Revision) error {
				_, err := r.FinishUntrusted("lease", map[string]MergeInput{amd: {Digest: d1}}, "no signature", at)
				return err
			},
			// Without d1 recorded (nothing pushed yet) the input moved: nothing is recorded.
			want:    map[Phase]Phase{PhaseWaiting: PhaseFailed, PhaseFailed: PhaseFailed},
			wantErr: unchanged("", PhaseBuilding, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			// Only a revision FinishUntrusted failed is retried; rev() makes none.
			name:    "evidence found after the refusal",
			event:   "RetryEvidence",
			do:      func(r *Revision) error { return r.RetryEvidence() },
			wantErr: unchanged(all...),
		},
		{
			// The arch tags were pushed long before now, with no build reported.
			name:  "no build reported within the wait",
			event: "BuildOverdue",
			do: func(r *Revision) error {
				return r.BuildOverdue("staging/app", []string{amd}, time.Minute, at.Add(time.Hour))
			},
			want:    map[Phase]Phase{"": PhaseFailed, PhaseBuilding: PhaseFailed, PhaseWaiting: PhaseFailed},
			wantErr: unchanged(PhaseMerged, PhaseSigned, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name:  "merged",
			event: "FinishMerged",
			do: func(r *Revision) error {
				return r.FinishMerged(map[string]MergeInput{amd: {Digest: d1}, arm: {Digest: d2}}, index, at)
			},
			want:    map[Phase]Phase{"": PhaseMerged, PhaseBuilding: PhaseMerged, PhaseWaiting: PhaseMerged, PhaseFailed: PhaseMerged},
			wantErr: unchanged(PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:  "the platform check failed",
			event: "FinishFailed",
			do: func(r *Revision) error {
				_, err := r.FinishFailed("lease", map[string]MergeInput{amd: {Digest: d1}}, "wrong platform", at)
				return err
			},
			// Building has no digest for amd64: the input moved, and nothing is recorded.
			want:    map[Phase]Phase{PhaseWaiting: PhaseFailed, PhaseFailed: PhaseFailed},
			wantErr: unchanged("", PhaseBuilding, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:  "the revision tag points elsewhere",
			event: "FinishConflicted",
			do: func(r *Revision) error {
				_, err := r.FinishConflicted("lease", map[string]MergeInput{amd: {Digest: d1}}, "r1 points elsewhere", at)
				return err
			},
			// As for a failure: an input that moved (nothing pushed yet) records nothing.
			want:    map[Phase]Phase{PhaseWaiting: PhaseConflicted, PhaseFailed: PhaseConflicted},
			wantErr: unchanged("", PhaseBuilding, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:    "merged without an index",
			event:   "FinishMerged",
			do:      func(r *Revision) error { return r.FinishMerged(nil, "", at) },
			wantErr: allErr(all, ErrTransition),
		},
		{
			name:  "evidence found after a refusal for want of it",
			event: "RetryEvidence",
			do: func(r *Revision) error {
				r.Untrusted = r.Phase == PhaseFailed // as FinishUntrusted leaves it
				return r.RetryEvidence()
			},
			want:    map[Phase]Phase{PhaseFailed: PhaseWaiting},
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:    "signed",
			event:   "MarkSigned",
			do:      func(r *Revision) error { return r.MarkSigned(at) },
			want:    map[Phase]Phase{PhaseMerged: PhaseSigned, PhaseConflicted: PhaseConflicted},
			wantErr: with(with(with(with(unchanged(PhaseSigned, PhasePromoted), "", ErrTransition), PhaseBuilding, ErrTransition), PhaseWaiting, ErrTransition), PhaseFailed, ErrTransition),
		},
		{
			name:  "promoted to one of two destinations",
			event: "PromotedTo",
			do: func(r *Revision) error {
				_, err := r.PromotedTo(dests[0], index, at, time.Second, dests)
				return err
			},
			want:    map[Phase]Phase{PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name:  "promoted to the last destination",
			event: "PromotedTo",
			do: func(r *Revision) error {
				_, err := r.PromotedTo(dests[0], index, at, time.Second, dests[:1])
				return err
			},
			want:    map[Phase]Phase{PhaseMerged: PhasePromoted, PhaseSigned: PhasePromoted, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name:    "a destination tag points elsewhere",
			event:   "PromotionConflicted",
			do:      func(r *Revision) error { return r.PromotionConflicted(dests[0], "tag moved", at) },
			want:    map[Phase]Phase{PhaseMerged: PhaseConflicted, PhaseSigned: PhaseConflicted, PhasePromoted: PhaseConflicted, PhaseConflicted: PhaseConflicted},
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name:  "nothing left to do, signing required",
			event: "Complete",
			do:    func(r *Revision) error { return r.Complete(true, nil, at) },
			want:  map[Phase]Phase{PhaseSigned: PhasePromoted},
			// Merged is not signed yet.
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhaseMerged, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name:    "nothing left to do, no signing",
			event:   "Complete",
			do:      func(r *Revision) error { return r.Complete(false, nil, at) },
			want:    map[Phase]Phase{PhaseMerged: PhasePromoted, PhaseSigned: PhasePromoted},
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhasePromoted, PhaseFailed, PhaseConflicted),
		},
		{
			name:    "destinations left",
			event:   "Complete",
			do:      func(r *Revision) error { return r.Complete(false, dests, at) },
			wantErr: unchanged(all...),
		},
		{
			name:    "a merge will be retried",
			event:   "MergeRetrying",
			do:      func(r *Revision) error { return r.MergeRetrying(Retry{Failures: 1, Error: "503"}) },
			want:    map[Phase]Phase{PhaseBuilding: PhaseBuilding, PhaseWaiting: PhaseWaiting, PhaseFailed: PhaseFailed},
			wantErr: unchanged("", PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted),
		},
		{
			name:  "a promotion will be retried",
			event: "StepRetrying",
			do: func(r *Revision) error {
				return r.StepRetrying(Step{Kind: StepPromote, Index: index, Destination: dests[0]}, Retry{Failures: 2, Error: "503"}, at)
			},
			want:    map[Phase]Phase{PhaseMerged: PhaseMerged, PhaseSigned: PhaseSigned, PhasePromoted: PhasePromoted, PhaseConflicted: PhaseConflicted},
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhaseFailed),
		},
		{
			name:  "a step of another index will be retried",
			event: "StepRetrying",
			do: func(r *Revision) error {
				return r.StepRetrying(Step{Kind: StepSign, Index: "sha256:other"}, Retry{Failures: 1}, at)
			},
			wantErr: unchanged(all...),
		},
		{
			name:    "a release tag pushed",
			event:   "ReleaseRequested",
			do:      func(r *Revision) error { return r.ReleaseRequested("v1.2.3", at) },
			want:    same(all),
			wantErr: map[Phase]error{},
		},
		{
			name:  "a release tag pushed again",
			event: "ReleaseRequested",
			do: func(r *Revision) error {
				_ = r.ReleaseRequested("v1.2.3", at)
				return r.ReleaseRequested("v1.2.3", at.Add(time.Hour))
			},
			wantErr: unchanged(all...),
		},
		{
			name:  "a release promoted",
			event: "ReleasePromoted",
			do: func(r *Revision) error {
				_ = r.ReleaseRequested("v1.2.3", at)
				return r.ReleasePromoted("v1.2.3", dests[0], index, at)
			},
			want:    same([]Phase{PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted}),
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name:    "a release promoted that was never requested",
			event:   "ReleasePromoted",
			do:      func(r *Revision) error { return r.ReleasePromoted("v1.2.3", dests[0], index, at) },
			wantErr: allErr(all, ErrTransition),
		},
		{
			name:  "a release tag points elsewhere",
			event: "ReleaseConflicted",
			do: func(r *Revision) error {
				_ = r.ReleaseRequested("v1.2.3", at)
				return r.ReleaseConflicted("v1.2.3", dests[0], "prod:v1.2.3 points elsewhere", at)
			},
			want:    same([]Phase{PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted}),
			wantErr: allErr([]Phase{"", PhaseBuilding, PhaseWaiting, PhaseFailed}, ErrTransition),
		},
		{
			name:  "a release promotion will be retried",
			event: "StepRetrying",
			do: func(r *Revision) error {
				_ = r.ReleaseRequested("v1.2.3", at)
				return r.StepRetrying(Step{Kind: StepPromote, Index: index, Destination: dests[0], Tag: "v1.2.3"}, Retry{Failures: 1, Error: "503"}, at)
			},
			want:    same([]Phase{PhaseMerged, PhaseSigned, PhasePromoted, PhaseConflicted}),
			wantErr: unchanged("", PhaseBuilding, PhaseWaiting, PhaseFailed),
		},
		{
			name:  "a retry of a release never requested",
			event: "StepRetrying",
			do: func(r *Revision) error {
				return r.StepRetrying(Step{Kind: StepPromote, Index: index, Destination: dests[0], Tag: "v1.2.3"}, Retry{Failures: 1}, at)
			},
			wantErr: unchanged(all...),
		},
		{
			name:  "a retry of an unknown step",
			event: "StepRetrying",
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

	// The architecture doc's table of phase changes is the code's, row for row.
	t.Run("docs/ARCHITECTURE.md", func(t *testing.T) {
		made := map[string]bool{} // the phase changes the code makes, as change writes them
		for _, tc := range tests {
			for _, from := range all {
				if r := rev(from); tc.do(r) == nil && r.Phase != from {
					made[change(from, tc.event, r.Phase)] = true
				}
			}
		}
		checkDocTable(t, "../../docs/ARCHITECTURE.md", made)
	})
}

// checkDocTable checks that the transition table of the doc at path lists exactly the
// phase changes made.
func checkDocTable(t *testing.T, path string, made map[string]bool) {
	t.Helper()
	if diff := cmp.Diff(slices.Sorted(maps.Keys(made)), docTransitions(t, path)); diff != "" {
		t.Errorf("the transition table of %s is not what the code does (-code +doc):\n%s", path, diff)
	}
}

func change(from Phase, event string, to Phase) string {
	return fmt.Sprintf("%q --%s--> %q", from, event, to)
}

// docTransitions reads the table under the header "| From | Transition | To |" in the doc
// at path: each row names the phases a transition leaves (a comma-separated list, "" for
// a revision never seen), the method, and the phase it enters. It returns each phase
// change it lists, as change writes them, sorted.
func docTransitions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the doc: %v", err)
	}
	cell := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
	phase := func(s string) Phase {
		if s = cell(s); s == `""` {
			return ""
		}
		return Phase(s)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		switch {
		case !in && len(cells) >= 3 && cell(cells[0]) == "From" && cell(cells[1]) == "Transition" && cell(cells[2]) == "To":
			in = true
		case in && !strings.HasPrefix(strings.TrimSpace(line), "|"):
			in = false
		case in && strings.HasPrefix(cell(cells[0]), "---"):
		case in:
			if len(cells) < 3 {
				t.Fatalf("table row %q: want From | Transition | To", line)
			}
			for _, from := range strings.Split(cells[0], ",") {
				out = append(out, change(phase(from), cell(cells[1]), phase(cells[2])))
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no table headed | From | Transition | To |", path)
	}
	sort.Strings(out)
	return out
}

// same maps each of phs to itself: the transition keeps the phase.
func same(phs []Phase) map[Phase]Phase {
	m := map[Phase]Phase{}
	for _, p := range phs {
		m[p] = p
	}
	return m
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
	at := time.Unix(1700000000, 0).UTC()

	t.Run("a moved merged tag names both digests", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r1", Phase: PhaseMerged, Index: "sha256:i",
			Platforms: map[string]PlatformState{amd: {Tag: "r1-amd64", Digest: "sha256:old"}}}
		v, err := r.RecordDigests("staging/app", []string{amd}, map[string]string{amd: "sha256:new"}, at)
		if err != nil || v == "" || r.Reason != v || !strings.Contains(v, "staging/app:r1-amd64 now points at sha256:new") || !strings.Contains(v, "merged with sha256:old") {
			t.Fatalf("violation %q, reason %q, %v", v, r.Reason, err)
		}
	})

	t.Run("a new image clears a failure and its retry", func(t *testing.T) {
		r := &Revision{Phase: PhaseFailed, Reason: "wrong platform", MergeRetry: Retry{Failures: 2},
			Platforms: map[string]PlatformState{amd: {Digest: "sha256:a"}}}
		if _, err := r.RecordDigests("s", []string{amd}, map[string]string{amd: "sha256:b"}, at); err != nil {
			t.Fatal(err)
		}
		if r.Phase != PhaseWaiting || r.Reason != "" || r.MergeRetry.Failures != 0 {
			t.Errorf("got %+v", r)
		}
	})

	t.Run("a final build failure says which build", func(t *testing.T) {
		r := &Revision{Phase: PhaseBuilding}
		res := BuildResult{Request: BuildRequest{Platform: MustPlatform(amd), Image: "s:r1-amd64"}, Outcome: BuildFailed, Reason: "exit 1", Final: true, Attempt: 2, Job: "build-1"}
		if err := r.RecordBuild(res, at); err != nil {
			t.Fatal(err)
		}
		if want := "build of linux/amd64 failed after 2 attempts (job build-1): exit 1"; r.Reason != want || r.Platforms[amd].Tag != "r1-amd64" {
			t.Errorf("reason %q, platforms %+v; want %q", r.Reason, r.Platforms, want)
		}
		if err := r.RecordBuild(res, at); !errors.Is(err, ErrNoChange) {
			t.Errorf("the same result again: %v, want ErrNoChange", err)
		}
	})
}

// TestMergeDetails checks what the end of a merge records besides the phase.
func TestMergeDetails(t *testing.T) {
	const amd = "linux/amd64"
	at := time.Unix(1700000000, 0).UTC()

	t.Run("a failure about a moved input only releases the lease", func(t *testing.T) {
		r := &Revision{Phase: PhaseWaiting, Merging: &Lease{ID: "mine"}, Platforms: map[string]PlatformState{amd: {Digest: "sha256:new"}}}
		moved, err := r.FinishFailed("mine", map[string]MergeInput{amd: {Digest: "sha256:old"}}, "wrong platform", at)
		if !moved || err != nil || r.Merging != nil || r.Phase != PhaseWaiting {
			t.Fatalf("moved %v, %v, %+v", moved, err, r)
		}
		r.Merging = &Lease{ID: "theirs"}
		if _, err := r.FinishFailed("mine", map[string]MergeInput{amd: {Digest: "sha256:old"}}, "x", at); !errors.Is(err, ErrNoChange) || r.Merging.ID != "theirs" {
			t.Fatalf("another's lease: %v, %+v", err, r.Merging)
		}
	})

	t.Run("an index is recorded with the digests it was built from", func(t *testing.T) {
		r := &Revision{Phase: PhaseWaiting, Merging: &Lease{ID: "mine"}, MergeRetry: Retry{Failures: 1}, Platforms: map[string]PlatformState{amd: {Digest: "sha256:new"}}}
		err := r.FinishMerged(map[string]MergeInput{amd: {Digest: "sha256:old"}}, "sha256:i", at)
		if err != nil || r.Platforms[amd].Digest != "sha256:old" || r.Index != "sha256:i" || r.Merging != nil || r.MergeRetry.Failures != 0 {
			t.Fatalf("%v, %+v", err, r)
		}
	})
}

// TestStepRetryDetails checks what a step that will be retried records.
func TestStepRetryDetails(t *testing.T) {
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
}

// TestStepDetails checks what signing and promotion record besides the phase.
func TestStepDetails(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()

	t.Run("signing clears its retry", func(t *testing.T) {
		r := &Revision{Phase: PhaseMerged, Index: "sha256:i", SignRetry: Retry{Failures: 3}}
		if err := r.MarkSigned(at); err != nil || !r.Signed || r.SignRetry.Failures != 0 {
			t.Fatalf("%v %+v", err, r)
		}
	})

	t.Run("promotions are recorded, a conflict with its reason", func(t *testing.T) {
		at := time.Unix(1, 0).UTC()
		r := &Revision{Phase: PhaseSigned, Index: "sha256:i", Signed: true}
		all, err := r.PromotedTo("a", "sha256:i", at, time.Second, []string{"a", "b"})
		if err != nil || all || !r.Promotions["a"].Done || r.Promotions["a"].Digest != "sha256:i" || !r.Promotions["a"].At.Equal(at) {
			t.Fatalf("%v %v %+v", all, err, r.Promotions)
		}
		if err := r.PromotionConflicted("b", "b:r1 points elsewhere", at); err != nil || r.Phase != PhaseConflicted || r.Reason != "b:r1 points elsewhere" || r.Promotions["b"].Error == "" {
			t.Fatalf("%v %+v", err, r)
		}
	})
}

// TestTimeline: each transition records when it happened, so that the status page shows
// where time went, from the webhook to each promotion, and where it stopped.
func TestTimeline(t *testing.T) {
	const amd, arm = "linux/amd64", "linux/arm64"
	t0 := time.Unix(1700000000, 0).UTC()
	step := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tags := map[string]string{amd: "r1-amd64", arm: "r1-arm64"}
	req := func(pl string) BuildRequest { return BuildRequest{Platform: MustPlatform(pl), Image: "s:" + tags[pl]} }

	r := &Revision{Pipeline: "app", Revision: "r1", Platforms: map[string]PlatformState{}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Dispatched(tags, step(0)))
	must(r.RecordBuild(BuildResult{Request: req(amd), Outcome: BuildFailed, Reason: "oom", Attempt: 1, Job: "job-amd-1", Duration: 2 * time.Second}, step(3)))
	must(r.RecordBuild(BuildResult{Request: req(amd), Outcome: BuildSucceeded, Attempt: 2, Job: "job-amd-2", Duration: 4 * time.Second}, step(8)))
	if err := r.RecordBuild(BuildResult{Request: req(amd), Outcome: BuildFailed, Reason: "oom", Attempt: 1, Job: "job-amd-1"}, step(9)); !errors.Is(err, ErrNoChange) {
		t.Errorf("a late result of an earlier attempt: %v, want ErrNoChange", err)
	}
	_, err := r.RecordDigests("s", []string{amd, arm}, map[string]string{amd: "sha256:a"}, step(9))
	must(err)
	_, err = r.RecordDigests("s", []string{amd, arm}, map[string]string{amd: "sha256:a", arm: "sha256:b"}, step(10))
	must(err)
	must(r.FinishMerged(map[string]MergeInput{amd: {Digest: "sha256:a"}, arm: {Digest: "sha256:b"}}, "sha256:i", step(11)))
	must(r.MarkSigned(step(12)))
	_, err = r.PromotedTo("prod", "sha256:i", step(14), 2*time.Second, []string{"prod"})
	must(err)

	want := &Revision{
		Pipeline: "app", Revision: "r1", Phase: PhasePromoted, Index: "sha256:i", Signed: true,
		Platforms: map[string]PlatformState{
			amd: {Tag: "r1-amd64", Digest: "sha256:a", Build: BuildSucceeded, Attempts: 2, Job: "job-amd-2", Built: step(8), BuildDuration: 4 * time.Second, Pushed: step(9)},
			arm: {Tag: "r1-arm64", Digest: "sha256:b", Pushed: step(10)},
		},
		Promotions: map[string]Promotion{"prod": {Done: true, Digest: "sha256:i", At: step(14), Duration: 2 * time.Second}},
		Received:   step(0), Merged: step(11), SignedAt: step(12), Finished: step(14),
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}

	t.Run("a failure ends it, a new image starts it again", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r2", Platforms: map[string]PlatformState{}}
		must(r.Dispatched(tags, step(0)))
		must(r.RecordBuild(BuildResult{Request: req(amd), Outcome: BuildFailed, Reason: "exit 1", Attempt: 3, Final: true, Job: "j"}, step(5)))
		if r.Phase != PhaseFailed || !r.Finished.Equal(step(5)) {
			t.Fatalf("failed: %s at %v", r.Phase, r.Finished)
		}
		if _, err := r.RecordDigests("s", []string{amd}, map[string]string{amd: "sha256:a"}, step(6)); err != nil || !r.Finished.IsZero() || !r.Received.Equal(step(0)) {
			t.Fatalf("retried: %v, finished %v, received %v", err, r.Finished, r.Received)
		}
	})
	t.Run("a revision first seen by its push was received then", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r3", Platforms: map[string]PlatformState{}}
		if _, err := r.RecordDigests("s", []string{amd}, map[string]string{amd: "sha256:a"}, step(7)); err != nil || !r.Received.Equal(step(7)) || !r.Platforms[amd].Pushed.Equal(step(7)) {
			t.Fatalf("%v %+v", err, r)
		}
	})
	t.Run("a conflict ends it", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r4", Phase: PhaseSigned, Index: "sha256:i", Signed: true}
		if err := r.PromotionConflicted("prod", "points elsewhere", step(20)); err != nil || !r.Finished.Equal(step(20)) || !r.Promotions["prod"].At.Equal(step(20)) {
			t.Fatalf("%v %+v", err, r)
		}
	})
}

// TestReleases checks what a release records as the revision moves, and which release
// promotions the revision is ready for.
func TestReleases(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	p := Pipeline{Name: "app", Promote: []Destination{{To: "prod.example/app"}, {To: "mirror.example/app"}}}

	t.Run("a tag for a revision never seen waits in the state", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r1", Platforms: map[string]PlatformState{}}
		if err := r.ReleaseRequested("v1.2.3", at); err != nil {
			t.Fatal(err)
		}
		if r.Phase != "" || !r.Releases["v1.2.3"].Requested.Equal(at) || r.Releases["v1.2.3"].Reason != "" {
			t.Fatalf("got %+v", r)
		}
		if got := r.ReleaseStepsLeft(p); got != nil {
			t.Errorf("steps before a merge: %+v", got)
		}
		// Its builds come later, and the release is still there.
		if err := r.Dispatched(map[string]string{"linux/amd64": "r1-amd64"}, at); err != nil || r.Phase != PhaseBuilding || len(r.Releases) != 1 {
			t.Fatalf("dispatched: %v %+v", err, r)
		}
	})
}

// TestReleasesFollowTheRevisionTag: each release goes where the revision tag is.
func TestReleasesFollowTheRevisionTag(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	const index = "sha256:i"
	p := Pipeline{Name: "app", Promote: []Destination{{To: "prod.example/app"}, {To: "mirror.example/app"}}}
	step := func(tag, dest string) Step {
		return Step{Kind: StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: dest, Tag: tag}
	}

	t.Run("each release goes to each destination the revision tag reached", func(t *testing.T) {
		r := &Revision{Pipeline: "app", Revision: "r1", Phase: PhaseSigned, Index: index, Signed: true,
			Promotions: map[string]Promotion{"prod.example/app": {Done: true, Digest: index}}}
		for _, tag := range []string{"v2", "v1"} {
			if err := r.ReleaseRequested(tag, at); err != nil {
				t.Fatal(err)
			}
		}
		want := []Step{step("v1", "prod.example/app"), step("v2", "prod.example/app")}
		if diff := cmp.Diff(want, r.ReleaseStepsLeft(p)); diff != "" {
			t.Fatalf("steps (-want +got):\n%s", diff)
		}
		if _, err := r.PromotedTo("mirror.example/app", index, at, time.Second, p.Destinations()); err != nil || r.Phase != PhasePromoted {
			t.Fatalf("promoted: %v %s", err, r.Phase)
		}
		if err := r.ReleasePromoted("v1", "prod.example/app", index, at); err != nil {
			t.Fatal(err)
		}
		if err := r.ReleasePromoted("v1", "prod.example/app", index, at); !errors.Is(err, ErrNoChange) {
			t.Errorf("the same outcome again: %v, want ErrNoChange", err)
		}
		if err := r.ReleaseConflicted("v2", "prod.example/app", "prod.example/app:v2 points elsewhere", at); err != nil {
			t.Fatal(err)
		}
		want = []Step{step("v1", "mirror.example/app"), step("v2", "mirror.example/app")}
		if diff := cmp.Diff(want, r.ReleaseStepsLeft(p)); diff != "" {
			t.Fatalf("steps after a promotion and a conflict (-want +got):\n%s", diff)
		}
		if got := r.Releases["v2"].Promotions["prod.example/app"]; !got.Conflicted || got.Done || got.Error == "" || r.Phase != PhasePromoted {
			t.Errorf("conflicted release %+v, phase %s; want the conflict recorded and the phase kept", got, r.Phase)
		}
		retry := Retry{Failures: 2, Error: "503", Next: at.Add(time.Second)}
		if err := r.StepRetrying(step("v1", "mirror.example/app"), retry, at); err != nil || r.Releases["v1"].Promotions["mirror.example/app"].Retry != retry {
			t.Errorf("retry: %v %+v", err, r.Releases["v1"])
		}
		if r.Promotions["mirror.example/app"].Retry.Failures != 0 {
			t.Errorf("a release's retry was recorded on the revision's promotion: %+v", r.Promotions)
		}
	})
}

// TestStoppedRevisionsPromoteNoRelease: a failed or conflicted revision says why.
func TestStoppedRevisionsPromoteNoRelease(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	const index = "sha256:i"
	p := Pipeline{Name: "app", Promote: []Destination{{To: "prod.example/app"}, {To: "mirror.example/app"}}}

	t.Run("a failed or conflicted revision says why it promotes no release", func(t *testing.T) {
		failed := &Revision{Pipeline: "app", Revision: "r1", Phase: PhaseFailed, Reason: "wrong platform",
			Platforms: map[string]PlatformState{"linux/amd64": {Digest: "sha256:a"}}}
		if err := failed.ReleaseRequested("v1", at); err != nil {
			t.Fatal(err)
		}
		if got := failed.Releases["v1"].Reason; !strings.Contains(got, "the revision is failed") {
			t.Errorf("reason %q, want it to say the revision failed", got)
		}
		// A new image retries the revision, and the release waits again.
		if _, err := failed.RecordDigests("s", []string{"linux/amd64"}, map[string]string{"linux/amd64": "sha256:b"}, at); err != nil {
			t.Fatal(err)
		}
		if failed.Phase != PhaseWaiting || failed.Releases["v1"].Reason != "" {
			t.Errorf("after a retry: %s, release %+v", failed.Phase, failed.Releases["v1"])
		}

		r := &Revision{Pipeline: "app", Revision: "r1", Phase: PhaseSigned, Index: index, Signed: true,
			Promotions: map[string]Promotion{"prod.example/app": {Done: true}}}
		if err := r.ReleaseRequested("v1", at); err != nil {
			t.Fatal(err)
		}
		if err := r.PromotionConflicted("mirror.example/app", "mirror.example/app:r1 points elsewhere", at); err != nil {
			t.Fatal(err)
		}
		if got := r.Releases["v1"].Reason; !strings.Contains(got, "the revision is conflicted") {
			t.Errorf("reason %q, want it to say the revision is conflicted", got)
		}
		if !r.Promotions["mirror.example/app"].Conflicted {
			t.Errorf("the revision's conflict is not marked: %+v", r.Promotions)
		}
		if got := r.ReleaseStepsLeft(p); got != nil {
			t.Errorf("a conflicted revision has release steps: %+v", got)
		}
	})
}

func TestReleaseTags(t *testing.T) {
	rt := ReleaseTags{"v*", "stable-[0-9]*"}
	for tag, want := range map[string]bool{"v1.2.3": true, "v": true, "stable-2": true, "stable-x": false, "1.2.3": false, "release/v1": false} {
		if got := rt.Match(tag); got != want {
			t.Errorf("Match(%q) = %v, want %v", tag, got, want)
		}
	}
	if err := (ReleaseTags{"v[", ""}).Validate(); err == nil || !strings.Contains(err.Error(), `"v["`) || !strings.Contains(err.Error(), "pattern 1 is empty") {
		t.Errorf("Validate: %v, want both patterns reported", err)
	}
	if err := rt.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestRevisionRules: the questions other packages ask of a revision, in every phase.
func TestRevisionRules(t *testing.T) {
	p := Pipeline{Platforms: []Platform{MustPlatform("linux/amd64"), MustPlatform("linux/arm64")}}
	both := map[string]PlatformState{"linux/amd64": {Digest: "sha256:a"}, "linux/arm64": {Digest: "sha256:b"}}
	one := map[string]PlatformState{"linux/amd64": {Digest: "sha256:a"}}
	tests := []struct {
		name                                    string
		rev                                     Revision
		stopped, advancing, unmerged, mergeable bool
	}{
		{name: "never seen", rev: Revision{}, unmerged: true},
		{name: "waiting for a platform", rev: Revision{Phase: PhaseWaiting, Platforms: one}, unmerged: true},
		{name: "every platform there", rev: Revision{Phase: PhaseWaiting, Platforms: both}, unmerged: true, mergeable: true},
		{name: "failed", rev: Revision{Phase: PhaseFailed, Platforms: both}, stopped: true},
		{name: "merged", rev: Revision{Phase: PhaseMerged, Index: "sha256:i", Platforms: both}, advancing: true},
		{name: "promoted", rev: Revision{Phase: PhasePromoted, Index: "sha256:i", Platforms: both}, advancing: true},
		{name: "conflicted after the merge", rev: Revision{Phase: PhaseConflicted, Index: "sha256:i", Platforms: both}, stopped: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rev
			got := []bool{r.Stopped(), r.Advancing(), r.Unmerged(), r.Mergeable(p)}
			want := []bool{tc.stopped, tc.advancing, tc.unmerged, tc.mergeable}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Stopped, Advancing, Unmerged, Mergeable (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMergeLease: one live lease at a time; only its holder renews or releases it.
func TestMergeLease(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	const ttl = 10 * time.Second
	tests := []struct {
		name    string
		held    *Lease
		do      func(r *Revision) error
		wantID  string // the lease's holder afterwards, "" for none
		wantErr error
	}{
		{
			name: "take a free lease",
			do: func(r *Revision) error {
				_, err := r.TakeMergeLease(Lease{Owner: "a", ID: "a/1"}, ttl, now)
				return err
			},
			wantID: "a/1",
		},
		{
			name: "another's live lease",
			held: &Lease{Owner: "b", ID: "b/1", Expires: now.Add(time.Second)},
			do: func(r *Revision) error {
				_, err := r.TakeMergeLease(Lease{Owner: "a", ID: "a/1"}, ttl, now)
				return err
			},
			wantID:  "b/1",
			wantErr: ErrLeaseHeld,
		},
		{
			name: "take over an expired lease",
			held: &Lease{Owner: "b", ID: "b/1", Expires: now.Add(-time.Second)},
			do: func(r *Revision) error {
				expired, err := r.TakeMergeLease(Lease{Owner: "a", ID: "a/1"}, ttl, now)
				if expired == nil || expired.ID != "b/1" {
					t.Errorf("took over %+v, want b/1's expired lease", expired)
				}
				return err
			},
			wantID: "a/1",
		},
		{
			name: "renew one's own",
			held: &Lease{Owner: "a", ID: "a/1", Expires: now},
			do: func(r *Revision) error {
				err := r.RenewMergeLease("a/1", ttl, now)
				if !r.Merging.Expires.Equal(now.Add(ttl)) {
					t.Errorf("expires %s, want %s", r.Merging.Expires, now.Add(ttl))
				}
				return err
			},
			wantID: "a/1",
		},
		{
			name:    "renew a lease taken over",
			held:    &Lease{Owner: "b", ID: "b/1", Expires: now},
			do:      func(r *Revision) error { return r.RenewMergeLease("a/1", ttl, now) },
			wantID:  "b/1",
			wantErr: ErrNoChange,
		},
		{
			name: "release one's own",
			held: &Lease{Owner: "a", ID: "a/1", Expires: now},
			do:   func(r *Revision) error { return r.ReleaseMergeLease("a/1") },
		},
		{
			name:    "release another's",
			held:    &Lease{Owner: "b", ID: "b/1", Expires: now},
			do:      func(r *Revision) error { return r.ReleaseMergeLease("a/1") },
			wantID:  "b/1",
			wantErr: ErrNoChange,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Revision{Phase: PhaseWaiting, Merging: tc.held}
			err := tc.do(r)
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			got := ""
			if r.Merging != nil {
				got = r.Merging.ID
			}
			if got != tc.wantID || (tc.wantID != "" && !r.HoldsMergeLease(tc.wantID)) {
				t.Errorf("lease held by %q, want %q", got, tc.wantID)
			}
		})
	}
}
