package e2e

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// BenchmarkLastPushToIndex measures what a user waits for: the time from the last arch
// push of a revision to its merged index being readable from the registry, through the
// real registry's notification, the daemon's receiver, JetStream and the merge. It runs at
// least 100 revisions and reports p50 and p99 in milliseconds.
//
//	go test -run XXX -bench LastPushToIndex ./e2e/
func BenchmarkLastPushToIndex(b *testing.B) {
	port := testenv.FreePort(b)
	staging := fmt.Sprintf("127.0.0.1:%d/bench/app", port)
	d := startDaemon(b, yamlf(`
auth:
	registryToken: %s
reconcileInterval: 1h
pipelines:
	- name: app
		source: {repo: https://git.example/bench/app}
		platforms: [linux/amd64, linux/arm64]
		staging: %s
`, registryToken, staging))
	testenv.StartRegistry(b, localregistry.WithPort(port), localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))

	n := max(b.N, 100)
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	type pair struct{ amd, arm v1.Image }
	images := make([]pair, n)
	for i := range images {
		images[i] = pair{testenv.PlatformImage(b, "linux/amd64", created), testenv.PlatformImage(b, "linux/arm64", created)}
	}
	waits := make([]float64, 0, n)
	b.ResetTimer()
	for i, p := range images {
		rev := fmt.Sprintf("b%04d", i)
		testenv.Push(b, staging+":"+rev+"-amd64", p.amd)
		testenv.Push(b, staging+":"+rev+"-arm64", p.arm)
		last := time.Now()
		ref, _ := name.ParseReference(staging+":"+rev, name.Insecure)
		for {
			if _, err := remote.Head(ref); err == nil {
				break
			}
			if time.Since(last) > 30*time.Second {
				b.Fatalf("%s: no index after 30s\n%s", rev, d.Logs.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		waits = append(waits, float64(time.Since(last).Microseconds())/1000)
	}
	b.StopTimer()
	sort.Float64s(waits)
	b.ReportMetric(percentile(waits, 0.50), "p50-ms")
	b.ReportMetric(percentile(waits, 0.99), "p99-ms")
	b.ReportMetric(float64(len(waits)), "revisions")
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}
