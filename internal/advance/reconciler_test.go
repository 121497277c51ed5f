package advance

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPhaseGauge: promoter_revisions counts every phase; promoter_revisions_idle_seconds
// is, per unfinished phase, the age of its least recently updated revision, 0 when none.
func TestPhaseGauge(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rev := func(ph types.Phase, age time.Duration) *types.Revision {
		return &types.Revision{Phase: ph, Updated: now.Add(-age)}
	}
	tests := []struct {
		name      string
		revs      []*types.Revision
		wantCount map[types.Phase]float64
		wantIdle  map[types.Phase]float64
	}{
		{
			name:      "none",
			wantCount: map[types.Phase]float64{},
			wantIdle:  map[types.Phase]float64{},
		},
		{
			name: "the oldest of each phase",
			revs: []*types.Revision{
				rev(types.PhaseWaiting, time.Minute), rev(types.PhaseWaiting, time.Hour), rev(types.PhaseBuilding, 30*time.Second),
				rev(types.PhasePromoted, 48*time.Hour), rev(types.PhaseFailed, 24*time.Hour),
			},
			wantCount: map[types.Phase]float64{types.PhaseWaiting: 2, types.PhaseBuilding: 1, types.PhasePromoted: 1, types.PhaseFailed: 1},
			wantIdle:  map[types.Phase]float64{types.PhaseWaiting: 3600, types.PhaseBuilding: 30},
		},
		{
			name:      "an update stamped after now (another replica's clock) is not negative",
			revs:      []*types.Revision{rev(types.PhaseSigned, -time.Second)},
			wantCount: map[types.Phase]float64{types.PhaseSigned: 1},
			wantIdle:  map[types.Phase]float64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			rc := &Reconciler{metrics: m}
			rc.setPhaseGauge(tt.revs, now)
			for _, ph := range types.Phases {
				if got := testutil.ToFloat64(m.Revisions.WithLabelValues(string(ph))); got != tt.wantCount[ph] {
					t.Errorf("promoter_revisions{state=%q}: got %v, want %v", ph, got, tt.wantCount[ph])
				}
			}
			// Terminal phases have no idle series: nothing more happens to them on its own.
			if got, want := testutil.CollectAndCount(m.RevisionsIdle), 4; got != want {
				t.Errorf("promoter_revisions_idle_seconds has %d series, want %d (building, waiting, merged, signed)", got, want)
			}
			for _, ph := range []types.Phase{types.PhaseBuilding, types.PhaseWaiting, types.PhaseMerged, types.PhaseSigned} {
				if got := testutil.ToFloat64(m.RevisionsIdle.WithLabelValues(string(ph))); got != tt.wantIdle[ph] {
					t.Errorf("promoter_revisions_idle_seconds{state=%q}: got %v, want %v", ph, got, tt.wantIdle[ph])
				}
			}
		})
	}
}
