package metrics

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBusReady(t *testing.T) {
	tests := []struct {
		name  string
		probe func(context.Context) error // nil: ObserveBus is not called
		want  float64
	}{
		{name: "no probe yet", want: 0},
		{name: "ready", probe: func(context.Context) error { return nil }, want: 1},
		{name: "not ready", probe: func(context.Context) error { return errors.New("nats CONNECTING") }, want: 0},
		{name: "probe gets a deadline", probe: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			return nil
		}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(prometheus.NewRegistry())
			if tt.probe != nil {
				m.ObserveBus(tt.probe)
			}
			if got := testutil.ToFloat64(m.BusReady); got != tt.want {
				t.Errorf("promoter_bus_ready: got %v, want %v", got, tt.want)
			}
		})
	}
}
