package broker_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/testenv"
)

// BenchmarkPublish measures confirmed, persistent, mandatory publishes to a
// quorum queue: one publisher at a time, then DefaultPublishChannels
// concurrent publishers. It reports msgs/s and the p50/p99 latency of a
// Publish call (publish to confirm).
func BenchmarkPublish(b *testing.B) {
	url := testenv.AMQPURL(b)
	conn := dial(b, url)
	a := newAdmin(b, url)
	spec := testQueue(b, a, "bench")
	declare(b, conn, spec)
	env, err := broker.NewEnvelope("bench.event", "job", "req", map[string]string{"video_id": "0123456789abcdef", "bucket": "videos"})
	if err != nil {
		b.Fatal(err)
	}

	for _, bc := range []struct {
		name    string
		workers int
	}{{"sequential", 1}, {"concurrent16", broker.DefaultPublishChannels}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([][]time.Duration, bc.workers)
			jobs := make(chan struct{}, bc.workers)
			var wg sync.WaitGroup
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for w := range bc.workers {
				wg.Go(func() {
					for range jobs {
						e := env
						e.ID = broker.NewID()
						t0 := time.Now()
						if err := conn.Publish(ctx, spec.Bindings[0], e); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				})
			}
			for range b.N {
				jobs <- struct{}{}
			}
			close(jobs)
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()

			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) == 0 {
				return
			}
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(all[min(len(all)-1, len(all)*99/100)].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
