package e2e_test

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// benchConcurrency is the number of clients sending at once.
const benchConcurrency = 32

// BenchmarkEdge measures, in one run, the same small GET through the edge and
// straight to a gateway, and nginx's own fixed answer (the edge's /healthz)
// as the ceiling. Each reports requests/s and p50/p99 latency.
func BenchmarkEdge(b *testing.B) {
	s := stack.New(b)
	g := s.Start("gateway")
	e := s.StartEdge()
	testenv.Eventually(b, 10*time.Second, func() bool { return inUpstream(e, g.Addr) }, "gateway never routed")

	for _, tc := range []struct{ name, url string }{
		{"nginx-return-200", e.URL("/healthz")},
		{"via-edge", e.URL(probePath)},
		{"direct-gateway", "http://" + g.Addr + probePath},
	} {
		b.Run(tc.name, func(b *testing.B) { benchGET(b, tc.url) })
	}
}

// benchGET sends b.N GETs to url from benchConcurrency clients.
func benchGET(b *testing.B, url string) {
	client := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: benchConcurrency}}
	var next atomic.Int64
	latencies := make([][]time.Duration, benchConcurrency)
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					failed.Add(1)
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
