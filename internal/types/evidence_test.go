package types

import (
	"strings"
	"testing"
	"time"
)

func TestBuildEvidence(t *testing.T) {
	const amd, arm = "linux/amd64", "linux/arm64"
	builds := Pipeline{Source: Source{Repo: "https://git.example/app.git"}, Platforms: []Platform{MustPlatform(amd), MustPlatform(arm)}}
	ok := PlatformState{Tag: "r1-amd64", Digest: "sha256:a", Build: BuildSucceeded, BuildDigest: "sha256:a", Job: "j1"}
	tests := []struct {
		name         string
		p            Pipeline
		amd, arm     PlatformState
		wantBuilt    []string
		wantWaiting  []string
		wantConflict string
	}{
		{name: "both built here", p: builds, amd: ok, arm: PlatformState{Digest: "sha256:b", Build: BuildSucceeded, BuildDigest: "sha256:b"}, wantBuilt: []string{amd, arm}},
		{name: "one without a build result", p: builds, amd: ok, arm: PlatformState{Digest: "sha256:b"}, wantBuilt: []string{amd}, wantWaiting: []string{arm}},
		{name: "a failed build is no evidence", p: builds, amd: ok, arm: PlatformState{Digest: "sha256:b", Build: BuildFailed}, wantBuilt: []string{amd}, wantWaiting: []string{arm}},
		{name: "pushed over after the build", p: builds, amd: PlatformState{Tag: "r1-amd64", Digest: "sha256:evil", Build: BuildSucceeded, BuildDigest: "sha256:a", Job: "j1"}, arm: ok,
			wantConflict: "staging/app:r1-amd64 holds sha256:evil, but promoter's build of linux/amd64 (job j1) pushed sha256:a"},
		{name: "merge-only pipelines have no build evidence", p: Pipeline{Platforms: builds.Platforms}, amd: ok, arm: ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Revision{Platforms: map[string]PlatformState{amd: tt.amd, arm: tt.arm}}
			built, waiting, conflict := r.BuildEvidence(tt.p, "staging/app")
			if !strings.HasPrefix(conflict, tt.wantConflict) || (tt.wantConflict == "") != (conflict == "") {
				t.Errorf("conflict %q, want %q", conflict, tt.wantConflict)
			}
			if strings.Join(waiting, ",") != strings.Join(tt.wantWaiting, ",") {
				t.Errorf("waiting %v, want %v", waiting, tt.wantWaiting)
			}
			if len(built) != len(tt.wantBuilt) {
				t.Errorf("built %v, want %v", built, tt.wantBuilt)
			}
			for _, key := range tt.wantBuilt {
				if e := built[key]; e.Kind != EvidenceBuild || e.Digest != r.Platforms[key].Digest {
					t.Errorf("%s: evidence %+v", key, e)
				}
			}
		})
	}
}

func TestBuildOverdueCountsFromTheLastPush(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	r := &Revision{Phase: PhaseWaiting, Received: at, Platforms: map[string]PlatformState{
		"linux/amd64": {Tag: "r1-amd64", Digest: "sha256:a", Pushed: at.Add(30 * time.Minute)},
	}}
	if err := r.BuildOverdue("s/app", []string{"linux/amd64"}, time.Hour, at.Add(80*time.Minute)); err != ErrNoChange || r.Phase != PhaseWaiting {
		t.Fatalf("80 minutes after receiving, 50 after the push: %v %s, want no change", err, r.Phase)
	}
	if err := r.BuildOverdue("s/app", []string{"linux/amd64"}, time.Hour, at.Add(91*time.Minute)); err != nil || r.Phase != PhaseFailed {
		t.Fatalf("61 minutes after the push: %v %s, want failed", err, r.Phase)
	}
	if want := "s/app:r1-amd64 holds sha256:a, but no build of promoter's reported it within 1h0m0s"; !strings.HasPrefix(r.Reason, want) {
		t.Errorf("reason %q, want it to start %q", r.Reason, want)
	}
}

func TestEvidenceString(t *testing.T) {
	tests := []struct {
		e    Evidence
		want string
	}{
		{Evidence{Kind: EvidenceBuild, Job: "build-web-1"}, "built by promoter (job build-web-1)"},
		{Evidence{Kind: EvidenceSignature, Signer: "key ci.pub (SHA256:ab)"}, "signed by key ci.pub (SHA256:ab)"},
		{Evidence{Kind: EvidenceSignature, Signer: "https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com", Detail: "attestation https://slsa.dev/provenance/v1"}, "signed by https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com; attestation https://slsa.dev/provenance/v1"},
		{Evidence{Kind: EvidenceUnverified, Detail: "the pipeline does not sign"}, "unverified; the pipeline does not sign"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestUntrustedIsRetriedWithEvidence(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	r := &Revision{Phase: PhaseWaiting, Platforms: map[string]PlatformState{"linux/amd64": {Tag: "r1-amd64", Digest: "sha256:a"}},
		Releases: map[string]Release{"v1": {Requested: at}}}
	if moved, err := r.FinishUntrusted("l", map[string]MergeInput{"linux/amd64": {Digest: "sha256:a"}}, "no signature", at); err != nil || moved {
		t.Fatalf("FinishUntrusted: %v %v", moved, err)
	}
	if r.Phase != PhaseFailed || !r.Untrusted || r.Releases["v1"].Reason == "" {
		t.Fatalf("after the refusal: %+v", r)
	}
	if err := r.RetryEvidence(); err != nil || r.Phase != PhaseWaiting || r.Untrusted || r.Reason != "" || r.Releases["v1"].Reason != "" || !r.Finished.IsZero() {
		t.Fatalf("after the evidence: %v %+v", err, r)
	}
	if err := r.RetryEvidence(); err != ErrNoChange {
		t.Errorf("a second retry: %v, want no change", err)
	}
	other := &Revision{Phase: PhaseFailed, Reason: "wrong platform"}
	if err := other.RetryEvidence(); err != ErrNoChange {
		t.Errorf("a failure that is not for want of evidence is retried: %v", err)
	}
}
