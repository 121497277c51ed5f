package bus

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkPublishEmbedded measures what a 2xx costs on the embedded server: Publish returns
// once the stream acknowledged, which with SyncAlways is after the write's fsync. sync=default
// is nats-server's own default (fsync every 2 minutes) for comparison. publishers=N runs N
// concurrent publishers, as concurrent webhooks do: the file store does not group-commit,
// so each message still pays its own fsync.
func BenchmarkPublishEmbedded(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		mode := "always"
		if noSync {
			mode = "default"
		}
		for _, publishers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("sync=%s/publishers=%d", mode, publishers), func(b *testing.B) {
				bs, err := Open(context.Background(), WithStoreDir(b.TempDir()), withNoSync(noSync))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = bs.Close() })
				if err := bs.WaitReady(context.Background()); err != nil {
					b.Fatal(err)
				}
				if got := bs.server.JetStreamConfig().SyncAlways; got == noSync {
					b.Fatalf("SyncAlways = %v with noSync = %v", got, noSync)
				}
				payload := map[string]string{"repo": "team/app", "tag": "abc123-amd64", "digest": "sha256:0123456789abcdef"}
				var id atomic.Int64
				ctx := context.Background()
				b.SetParallelism(max(1, publishers/runtime.GOMAXPROCS(0))) // RunParallel starts this × GOMAXPROCS goroutines
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := bs.Publish(ctx, "promoter.events.registry", strconv.FormatInt(id.Add(1), 10), payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(id.Load())/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(bs.commit.batched.Load())/float64(id.Load()), "batched/msg")
				if n := bs.commit.batchCount.Load(); n > 0 {
					b.ReportMetric(float64(bs.commit.batched.Load())/float64(n), "msgs/batch")
				}
			})
		}
	}
}

// BenchmarkPublishAll10000 stores 10,000 events of one request with PublishAll on the
// embedded server (fsync before every acknowledgement): new ids (stored in atomic batches),
// and the same ids again (every one a duplicate).
func BenchmarkPublishAll10000(b *testing.B) {
	const n = 10000
	for _, mode := range []string{"new", "duplicate"} {
		b.Run(mode, func(b *testing.B) {
			bs, err := Open(context.Background(), WithStoreDir(b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = bs.Close() })
			if err := bs.WaitReady(context.Background()); err != nil {
				b.Fatal(err)
			}
			payload := map[string]string{"repo": "team/app", "tag": "abc123-amd64", "digest": "sha256:0123456789abcdef"}
			msgs := func(prefix string) []Message {
				out := make([]Message, n)
				for i := range out {
					out[i] = Message{Subject: "promoter.events.registry", MsgID: prefix + strconv.Itoa(i), Value: payload}
				}
				return out
			}
			same := msgs("same-")
			if mode == "duplicate" {
				if _, err := bs.PublishAll(context.Background(), same); err != nil {
					b.Fatal(err)
				}
			}
			iter := 0
			for b.Loop() {
				m := same
				if mode == "new" {
					m = msgs(fmt.Sprintf("new-%d-", iter))
				}
				if _, err := bs.PublishAll(context.Background(), m); err != nil {
					b.Fatal(err)
				}
				iter++
			}
			b.ReportMetric(float64(iter*n)/b.Elapsed().Seconds(), "msgs/s")
			if c := bs.commit.batchCount.Load(); c > 0 {
				b.ReportMetric(float64(bs.commit.batched.Load())/float64(c), "msgs/batch")
			}
		})
	}
}
