package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// benchConcurrency is the number of clients sending at once.
const benchConcurrency = 32

// BenchmarkEdge measures, in one run, a small authenticated GET (the
// caller's job list, token verified by the gateway) through the edge and
// straight to a gateway, and nginx's own fixed answer (the edge's /healthz)
// as the ceiling. Each reports requests/s and p50/p99 latency.
func BenchmarkEdge(b *testing.B) {
	s := stack.New(b)
	s.Start("auth")
	g := s.Start("gateway")
	e := s.StartEdge()
	testenv.Eventually(b, 10*time.Second, func() bool { return inUpstream(e, g.Addr) }, "gateway never routed")
	token := signUp(b, e)

	for _, tc := range []struct{ name, url, token string }{
		{"nginx-return-200", e.URL("/healthz"), ""},
		{"via-edge", e.URL("/api/v1/jobs"), token},
		{"direct-gateway", "http://" + g.Addr + "/api/v1/jobs", token},
	} {
		b.Run(tc.name, func(b *testing.B) { benchGET(b, tc.url, tc.token) })
	}
}

// signUp creates a user through the edge and returns an access token.
func signUp(tb testing.TB, e *stack.Edge) string {
	tb.Helper()
	email := fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano())
	creds := fmt.Sprintf(`{"email":%q,"password":"bench-password-1"}`, email)
	for _, path := range []string{"/api/v1/users", "/api/v1/token"} {
		resp, err := http.Post(e.URL(path), "application/json", strings.NewReader(creds))
		if err != nil {
			tb.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			tb.Fatalf("POST %s = %d %s", path, resp.StatusCode, body)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
			return tok.AccessToken
		}
	}
	tb.Fatal("no access token from auth")
	return ""
}

// benchGET sends b.N GETs to url from benchConcurrency clients, with a
// bearer token when token is set.
func benchGET(b *testing.B, url, token string) {
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
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
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
