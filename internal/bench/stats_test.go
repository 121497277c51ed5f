package bench

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

// seq is 1..n milliseconds.
func seq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		want    Summary
	}{
		{name: "none", samples: nil, want: Summary{}},
		{name: "one", samples: ms(7), want: Summary{N: 1, P50: 7 * time.Millisecond, P90: 7 * time.Millisecond, P99: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{name: "unsorted input", samples: ms(5, 1, 4, 2, 3), want: Summary{N: 5, P50: 3 * time.Millisecond, P90: 5 * time.Millisecond, P99: 5 * time.Millisecond, Max: 5 * time.Millisecond}},
		// 100 samples: p99 is the 99th, not the maximum, and not the second-worst of a
		// rounded index either.
		{name: "100", samples: seq(100), want: Summary{N: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}},
		// 500 samples: p99 is the 495th, five samples above it.
		{name: "500", samples: seq(500), want: Summary{N: 500, P50: 250 * time.Millisecond, P90: 450 * time.Millisecond, P99: 495 * time.Millisecond, Max: 500 * time.Millisecond}},
		// Fewer than 100 samples: p99 is the maximum, never interpolated below it.
		{name: "10", samples: seq(10), want: Summary{N: 10, P50: 5 * time.Millisecond, P90: 9 * time.Millisecond, P99: 10 * time.Millisecond, Max: 10 * time.Millisecond}},
		{name: "ties", samples: ms(2, 2, 2, 9), want: Summary{N: 4, P50: 2 * time.Millisecond, P90: 9 * time.Millisecond, P99: 9 * time.Millisecond, Max: 9 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tt.samples...)
			got := Summarize(tt.samples)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Summarize (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(in, tt.samples); diff != "" {
				t.Errorf("Summarize changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{name: "none", want: 0},
		{name: "odd", samples: ms(9, 1, 5), want: 5 * time.Millisecond},
		{name: "even", samples: ms(4, 1, 3, 2), want: 2500 * time.Microsecond},
		{name: "one", samples: ms(3), want: 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Median(tt.samples); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.samples, got, tt.want)
			}
		})
	}
}
