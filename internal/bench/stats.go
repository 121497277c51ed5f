package bench

import (
	"math"
	"slices"
	"time"
)

// Summary is the distribution of a set of samples.
type Summary struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// Summarize sorts a copy of samples and returns their nearest-rank percentiles.
func Summarize(samples []time.Duration) Summary {
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return Summary{}
	}
	return Summary{
		N:   len(s),
		P50: Percentile(s, 50),
		P90: Percentile(s, 90),
		P99: Percentile(s, 99),
		Max: s[len(s)-1],
	}
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted: the smallest
// sample that at least p% of the samples are less than or equal to. With 500 samples p99
// is the 495th, so the 5 slowest are above it; with fewer than 100 samples p99 is the
// maximum. It is 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Median is the 50th percentile of samples, in any order: the middle one, or the mean of
// the two middle ones for an even count.
func Median(samples []time.Duration) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	switch n := len(s); {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	default:
		return (s[n/2-1] + s[n/2]) / 2
	}
}
