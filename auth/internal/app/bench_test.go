package app_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/auth/internal/authtest"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/testenv"
)

// BenchmarkValidateRemote compares, in one run, the two ways a service can
// check a token, over the same pool of 256 distinct tokens and with the
// same 16 concurrent requests per core:
//
//   - local: platform/authn's middleware with auth's JWKS (fetched over
//     HTTP once) and the Redis deny-list lookup — what gateway and
//     filestorage do;
//   - remote: POST /v1/validate over HTTP (keep-alive, loopback) to a real
//     auth server started in-process — the seed flow.
//
// Each pair runs on one core and on every core, whatever -cpu says (the
// target is stated per core); both report checks/s, and the remote one the
// ratio of the local rate to its own:
//
//	go test -run '^$' -bench ValidateRemote ./internal/app
func BenchmarkValidateRemote(b *testing.B) {
	s := authtest.Start(b, map[string]string{"LOG_LEVEL": "warn", "LOGIN_MAX_FAILURES": "1000"})
	// 16 users' tokens and 240 service tokens (client credentials cost no bcrypt): 256 distinct tokens.
	tokens := make([]string, 0, 256)
	email := newEmail()
	s.Signup(b, email, password)
	for range 16 {
		tokens = append(tokens, "Bearer "+s.Login(b, email, password).AccessToken)
	}
	for len(tokens) < 256 {
		r := s.Do(b, "POST", "/v1/token", map[string]string{"grant_type": "client_credentials", "client_id": "gateway", "client_secret": authtest.ClientSecret})
		var t struct {
			AccessToken string `json:"access_token"`
		}
		r.JSON(b, &t)
		tokens = append(tokens, "Bearer "+t.AccessToken)
	}
	ctx := testenv.Context(b, 5*time.Minute)
	keys, err := authn.JWKSFromURL(ctx, s.URL+authn.JWKSPath, authn.JWKSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	v, err := authn.New(authn.Options{Issuer: authn.DefaultIssuer, Audience: authn.DefaultAudience,
		Keys: keys, DenyList: s.Redis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	local := authn.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	for _, cores := range []int{1, runtime.NumCPU()} {
		var rate [2]float64 // checks/s: local, remote
		b.Run(fmt.Sprintf("cores=%d/local", cores), func(b *testing.B) {
			testenv.OnCores(b, cores)
			rate[0] = checksPerSecond(b, tokens, func() func(string) error {
				req := httptest.NewRequest("GET", "/", nil)
				return func(tok string) error {
					req.Header.Set("Authorization", tok)
					rec := httptest.NewRecorder()
					local.ServeHTTP(rec, req)
					if rec.Code != 204 {
						return fmt.Errorf("local: %d %s", rec.Code, rec.Body)
					}
					return nil
				}
			})
		})
		b.Run(fmt.Sprintf("cores=%d/remote", cores), func(b *testing.B) {
			testenv.OnCores(b, cores)
			rate[1] = checksPerSecond(b, tokens, func() func(string) error {
				return func(tok string) error {
					req, _ := http.NewRequest("POST", s.URL+"/v1/validate", bytes.NewReader(nil))
					req.Header.Set("Authorization", tok)
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						return fmt.Errorf("remote: %d", resp.StatusCode)
					}
					return nil
				}
			})
			// Targets: local ≥ 20,000 checks/s on one core, and ≥ 10× remote.
			b.ReportMetric(rate[0]/rate[1], "local-×-remote")
		})
	}
}

// checksPerSecond runs b.N checks from 16 goroutines per core, each with a
// checker of its own from newChecker, cycling through tokens, and reports
// and returns the rate.
func checksPerSecond(b *testing.B, tokens []string, newChecker func() func(token string) error) float64 {
	var next atomic.Uint64
	b.SetParallelism(16) // requests wait on Redis or HTTP; let others use the core meanwhile
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		check := newChecker()
		for pb.Next() {
			if err := check(tokens[next.Add(1)%uint64(len(tokens))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	rate := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(rate, "checks/s")
	return rate
}
