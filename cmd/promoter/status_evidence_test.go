package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/types"
)

// Digests of the evidence fixtures.
const (
	amd64Digest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	arm64Digest   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	s390xDigest   = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	riscv64Digest = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	indexDigest   = "sha256:5555555555555555555555555555555555555555555555555555555555555555"
)

// conflictReason is a refusal as the merge words it, with a tab and a line break the
// table must not touch.
const conflictReason = "reg.example/acme/web:abc-amd64 holds sha256:1111111111111111111111111111111111111111111111111111111111111111, " +
	"but promoter's build of linux/amd64 (job build-web-abc-linux-amd64-1-1a2b3c4d) pushed sha256:9999999999999999999999999999999999999999999999999999999999999999: " +
	"the arch tag was pushed over after the build; promoter signs only what it built\n\tpushed by: ci-bot"

// merged is a revision merged on each kind of evidence.
func merged(r *types.Revision) error {
	r.Phase, r.Index = types.PhasePromoted, indexDigest
	r.Platforms = map[string]types.PlatformState{
		"linux/amd64": {Tag: "abc-amd64", Digest: amd64Digest, Build: types.BuildSucceeded, BuildDigest: amd64Digest,
			Job:      "build-web-abc-linux-amd64-1-1a2b3c4d",
			Evidence: &types.Evidence{Kind: types.EvidenceBuild, Digest: amd64Digest, Job: "build-web-abc-linux-amd64-1-1a2b3c4d"}},
		"linux/arm64": {Tag: "abc-arm64", Digest: arm64Digest,
			Evidence: &types.Evidence{Kind: types.EvidenceSignature, Digest: arm64Digest, Signer: "key /etc/ci.pub (SHA256:n1TOyHNbnxPbZb7Ypcx3lTwGnvA2MzkJzjDZLFzPMYM)"}},
		"linux/s390x": {Tag: "abc-s390x", Digest: s390xDigest,
			Evidence: &types.Evidence{Kind: types.EvidenceSignature, Digest: s390xDigest,
				Signer: "https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com",
				Detail: "attestation https://slsa.dev/provenance/v1 verified"}},
		"linux/riscv64": {Tag: "abc-riscv64", Digest: riscv64Digest,
			Evidence: &types.Evidence{Kind: types.EvidenceUnverified, Digest: riscv64Digest, Detail: "verify.acceptUnverified"}},
	}
	return nil
}

// TestStatusPrintsEvidence: `promoter status PIPELINE/REVISION` says per platform why its
// image was merged, and a refused revision's reason as the daemon wrote it; the list
// stays one row per revision.
func TestStatusPrintsEvidence(t *testing.T) {
	ctx := context.Background()
	st := state.New(bustest.Revisions(t))
	write := func(revision string, f func(*types.Revision) error) {
		t.Helper()
		if _, err := st.Update(ctx, "web", revision, f); err != nil {
			t.Fatal(err)
		}
	}
	write("merged", merged)
	write("conflicted", func(r *types.Revision) error {
		r.Phase, r.Reason = types.PhaseConflicted, conflictReason
		r.Platforms = map[string]types.PlatformState{"linux/amd64": {Tag: "abc-amd64", Digest: amd64Digest, BuildDigest: "sha256:9999999999999999999999999999999999999999999999999999999999999999"}}
		return nil
	})
	write("failed", func(r *types.Revision) error {
		r.Phase = types.PhaseFailed
		r.Reason = "reg.example/acme/web:abc-amd64 holds " + amd64Digest + ", but no build of promoter's reported it within 30m0s"
		// Evidence of a revision not merged is not shown.
		r.Platforms = map[string]types.PlatformState{"linux/amd64": {Tag: "abc-amd64", Digest: amd64Digest,
			Evidence: &types.Evidence{Kind: types.EvidenceUnverified, Digest: amd64Digest}}}
		return nil
	})
	h, err := status.NewHandler(st, "t0k")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name string
		arg  string // PIPELINE/REVISION, or empty for the list
		// want are the lines under the revision's row, without their indent.
		want []string
		// reason, when set, must be in the output exactly.
		reason string
	}{
		{
			name: "each kind of evidence", arg: "web/merged",
			want: []string{
				"linux/amd64 sha256:111111111111: built by promoter (job build-web-abc-linux-amd64-1-1a2b3c4d)",
				"linux/arm64 sha256:222222222222: signed by key /etc/ci.pub (SHA256:n1TOyHNbnxPbZb7Ypcx3lTwGnvA2MzkJzjDZLFzPMYM)",
				"linux/riscv64 sha256:444444444444: unverified; verify.acceptUnverified",
				"linux/s390x sha256:333333333333: signed by https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com; attestation https://slsa.dev/provenance/v1 verified",
			},
		},
		{
			name: "a conflicted revision's reason verbatim", arg: "web/conflicted",
			want:   []string{"reason: " + strings.SplitN(conflictReason, "\n", 2)[0], "pushed by: ci-bot"},
			reason: "reason: " + conflictReason + "\n",
		},
		{
			name: "no evidence before the merge", arg: "web/failed",
			want: []string{"reason: reg.example/acme/web:abc-amd64 holds " + amd64Digest + ", but no build of promoter's reported it within 30m0s"},
		},
		{
			name: "the list has no evidence lines", // newest first
			want: []string{"reason: reg.example/acme/web:abc-amd64 holds " + amd64Digest + ", but no build of promoter's reported it within 30m0s",
				"reason: " + strings.SplitN(conflictReason, "\n", 2)[0], "pushed by: ci-bot"},
			reason: "reason: " + conflictReason + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"status", "--server", srv.URL, "--token", "t0k"}
			if tc.arg != "" {
				args = append(args, tc.arg)
			}
			out, _, err := runCLI(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reason != "" && !strings.Contains(out, tc.reason) {
				t.Errorf("got:\n%s\nwant it to hold %q", out, tc.reason)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				// A revision's row starts at the first column, the lines under it are indented.
				if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
					got = append(got, strings.TrimSpace(line))
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lines under the rows (-want +got):\n%s\noutput:\n%s", diff, out)
			}
		})
	}
}

// TestStatusEvidenceLines: one line per merged platform, in platform order, with the digest the
// evidence is about, worded as types.Evidence.String.
func TestStatusEvidenceLines(t *testing.T) {
	r := &types.Revision{}
	if err := merged(r); err != nil {
		t.Fatal(err)
	}
	r.Platforms["linux/ppc64le"] = types.PlatformState{Tag: "abc-ppc64le", Digest: "sha256:6666666666666666666666666666666666666666666666666666666666666666"} // merged by an older daemon: no evidence
	want := []string{
		"linux/amd64 sha256:111111111111: built by promoter (job build-web-abc-linux-amd64-1-1a2b3c4d)",
		"linux/arm64 sha256:222222222222: signed by key /etc/ci.pub (SHA256:n1TOyHNbnxPbZb7Ypcx3lTwGnvA2MzkJzjDZLFzPMYM)",
		"linux/riscv64 sha256:444444444444: unverified; verify.acceptUnverified",
		"linux/s390x sha256:333333333333: signed by https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com; attestation https://slsa.dev/provenance/v1 verified",
	}
	if diff := cmp.Diff(want, evidenceLines(r)); diff != "" {
		t.Errorf("evidence lines (-want +got):\n%s", diff)
	}
	r.Index = ""
	if got := evidenceLines(r); got != nil {
		t.Errorf("a revision not merged: got %q, want none", got)
	}
}
