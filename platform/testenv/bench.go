package testenv

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Throughput is what BenchGET measured.
type Throughput struct {
	Rate     float64 // requests per second
	P50, P99 time.Duration
}

// benchWarmUp is how many requests each client of BenchGET sends before it
// measures: the connections of every hop (the client's, the edge's
// upstream keep-alives, the services' database pools) are open by then, so a
// short run measures the same steady state as a long one.
const benchWarmUp = 50

// BenchGET sends b.N GETs to url from clients concurrent clients, with a
// bearer token when token is set, and reports and returns req/s and p50/p99
// latency. Every answer must be 200. Before it measures, each client sends
// benchWarmUp requests that are not counted.
func BenchGET(b *testing.B, url, token string, clients int) Throughput {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var next, failed atomic.Int64
	latencies := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	get := func() (status int, err error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for range clients {
		wg.Go(func() {
			for range benchWarmUp {
				_, _ = get()
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				status, err := get()
				if err != nil || status != http.StatusOK {
					failed.Add(1)
				}
				if err == nil {
					latencies[w] = append(latencies[w], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	t := Throughput{Rate: float64(b.N) / elapsed.Seconds(), P50: all[len(all)/2], P99: all[len(all)*99/100]}
	b.ReportMetric(t.Rate, "req/s")
	b.ReportMetric(float64(t.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(t.P99.Microseconds())/1000, "p99-ms")
	return t
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// OnCores runs the rest of tb on n cores (GOMAXPROCS), whatever -cpu says,
// and restores the previous setting when tb ends: for figures a target
// states per core, printed by a plain `make bench`.
func OnCores(tb testing.TB, n int) {
	prev := runtime.GOMAXPROCS(n)
	tb.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}
