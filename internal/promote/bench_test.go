package promote_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// benchIndex is the benchmark's source: 2 platforms x 8 layers x 8 MiB of random data
// (128 MiB that no compression shrinks), between two registries so that every byte moves.
func benchIndex(b *testing.B) (src, dstHost string) {
	b.Helper()
	a, dst := testenv.StartRegistry(b), testenv.StartRegistry(b)
	f := pushFixture(b, a.Host, "bench/app", "v1", fixtureOpts{layers: 8, layerSize: 8 << 20, plain: true})
	return f.ref, dst.Host
}

// BenchmarkPromoteVsCrane times, in each iteration and into fresh destination
// repositories, promoter's Promote, `crane copy` and `regctl image copy` with their
// defaults, and reports each time and the ratios (crane/promoter > 1: promoter is faster).
//
//	go test -run '^$' -bench PromoteVsCrane -benchtime 3x ./internal/promote/
func BenchmarkPromoteVsCrane(b *testing.B) {
	crane, regctl := testenv.Tool(b, "crane"), testenv.Tool(b, "regctl")
	src, dstHost := benchIndex(b)
	srcHost := src[:len(src)-len("/bench/app:v1")]
	p := newPromoter(b, registry.Client{})
	var tp, tc, tr time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		// Rotate the order so that no tool always runs on a warm page cache.
		steps := []func(){
			func() {
				start := time.Now()
				if _, err := promoteOne(context.Background(), p, src, promote.Target{Ref: fmt.Sprintf("%s/promoter-%d", dstHost, i)}); err != nil {
					b.Fatal(err)
				}
				tp += time.Since(start)
			},
			func() {
				tc += timeCmd(b, crane, "copy", "--insecure", src, fmt.Sprintf("%s/crane-%d:v1", dstHost, i))
			},
			func() {
				tr += timeCmd(b, regctl, "image", "copy", "--host", "reg="+srcHost+",tls=disabled", "--host", "reg="+dstHost+",tls=disabled",
					src, fmt.Sprintf("%s/regctl-%d:v1", dstHost, i))
			},
		}
		for k := range steps {
			steps[(k+i)%len(steps)]()
		}
	}
	n := float64(i)
	b.ReportMetric(tp.Seconds()/n, "promoter-s/op")
	b.ReportMetric(tc.Seconds()/n, "crane-s/op")
	b.ReportMetric(tr.Seconds()/n, "regctl-s/op")
	b.ReportMetric(tc.Seconds()/tp.Seconds(), "crane/promoter")
	b.ReportMetric(tr.Seconds()/tp.Seconds(), "regctl/promoter")
}

// BenchmarkPromoteJobs is how DefaultJobs was chosen: the same copy with 1 to 16
// concurrent requests per host.
//
//	go test -run '^$' -bench PromoteJobs -benchtime 3x ./internal/promote/
func BenchmarkPromoteJobs(b *testing.B) {
	src, dstHost := benchIndex(b)
	for _, jobs := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("jobs=%d", jobs), func(b *testing.B) {
			p := newPromoter(b, registry.Client{}, promote.WithJobs(jobs))
			i := 0
			for b.Loop() {
				i++
				if _, err := promoteOne(context.Background(), p, src, promote.Target{Ref: fmt.Sprintf("%s/jobs%d-%d", dstHost, jobs, i)}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(16 * 8 << 20)
		})
	}
}

func timeCmd(b *testing.B, bin string, args ...string) time.Duration {
	b.Helper()
	start := time.Now()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	return time.Since(start)
}
