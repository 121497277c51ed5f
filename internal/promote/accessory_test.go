package promote

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestMergeLayers: signatures are added, never dropped.
func TestMergeLayers(t *testing.T) {
	l := func(i int) v1.Descriptor {
		return v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064d", i)}}
	}
	tests := []struct {
		name       string
		have, want []v1.Descriptor
		wantLayers []v1.Descriptor
		wantAction Action
	}{
		{name: "destination holds every source signature", have: []v1.Descriptor{l(1), l(2)}, want: []v1.Descriptor{l(2)}, wantAction: Skip},
		{name: "destination holds a subset: the source replaces it", have: []v1.Descriptor{l(1)}, want: []v1.Descriptor{l(1), l(2)}, wantAction: Copy},
		{name: "both hold their own: merged, the destination's first",
			have: []v1.Descriptor{l(3), l(1)}, want: []v1.Descriptor{l(1), l(2)},
			wantLayers: []v1.Descriptor{l(3), l(1), l(2)}, wantAction: Merge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layers, action := mergeLayers(tt.have, tt.want)
			if action != tt.wantAction {
				t.Errorf("got action %s, want %s", action, tt.wantAction)
			}
			if diff := cmp.Diff(tt.wantLayers, layers); diff != "" {
				t.Errorf("layers (-want +got):\n%s", diff)
			}
		})
	}
}
