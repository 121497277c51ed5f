package promote

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestLanes: the referrers of one subject are written one after another, everything else
// at once, in the wave's order.
func TestLanes(t *testing.T) {
	h := func(i int) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064d", i)} }
	a, b := v1.Descriptor{Digest: h(1)}, v1.Descriptor{Digest: h(2)}
	nodes := []*node{
		{digest: h(10), subject: &a},
		{digest: h(11)},
		{digest: h(12), subject: &b},
		{digest: h(13), subject: &a},
		{digest: h(14)},
	}
	want := [][]int{{0, 3}, {1}, {2}, {4}}
	if diff := cmp.Diff(want, lanes(nodes, []int{0, 1, 2, 3, 4})); diff != "" {
		t.Errorf("lanes (-want +got):\n%s", diff)
	}
}

// TestWaves: an index comes after its children, a referrer after its subject, a cosign
// tag after the manifest it is attached to; what depends on nothing goes first, together.
func TestWaves(t *testing.T) {
	h := func(i int) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064d", i)} }
	desc := func(i int) v1.Descriptor { return v1.Descriptor{Digest: h(i)} }
	sub := desc(3)
	nodes := []*node{
		{digest: h(1)}, // 0: child
		{digest: h(2)}, // 1: child
		{digest: h(3), children: []v1.Descriptor{desc(1), desc(2)}}, // 2: index
		{digest: h(4), subject: &sub},                               // 3: referrer of the index
		{digest: h(5), tag: "sha256-x.sig", accessoryOf: h(1)},      // 4: signature of a child
		{digest: h(6), tag: "sha256-y.sig", accessoryOf: h(9)},      // 5: of a manifest not in the plan
	}
	want := [][]int{{0, 1, 5}, {2, 4}, {3}}
	if diff := cmp.Diff(want, waves(nodes)); diff != "" {
		t.Errorf("waves (-want +got):\n%s", diff)
	}
}
