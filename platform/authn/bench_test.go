package authn_test

import (
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/testenv"
)

// BenchmarkVerifyMiddleware measures local verification through the
// middleware, including the Redis deny-list lookup, over a pool of 1,024
// distinct tokens (1,024 users). "cached" is the default Verifier, which
// remembers verified tokens for a minute, so a token seen before skips the
// Ed25519 check; "uncached" checks the signature every time. It runs on one
// core, whatever -cpu says (the target, 20,000/s, is per core):
//
//	go test -run '^$' -bench VerifyMiddleware ./authn
func BenchmarkVerifyMiddleware(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run("cores=1/"+bc.name, func(b *testing.B) {
			testenv.OnCores(b, 1)
			f := newFixture(b, bc.cache)
			tokens := make([]string, 1024)
			for i := range tokens {
				tokens[i] = "Bearer " + f.signer.sign(b, validClaims())
			}
			var next atomic.Uint64
			b.SetParallelism(16) // requests wait on Redis; let others use the core meanwhile
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", "/x", nil)
				for pb.Next() {
					req.Header.Set("Authorization", tokens[next.Add(1)%uint64(len(tokens))])
					rec := httptest.NewRecorder()
					f.h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "verifications/s")
		})
	}
}
