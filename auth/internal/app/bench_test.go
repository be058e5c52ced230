package app_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/testenv"
)

// BenchmarkValidateRemote compares, in one run, the two ways a service can
// check a token, over the same pool of 256 distinct tokens:
//
//   - local: platform/authn's middleware with auth's JWKS (fetched over
//     HTTP once) and the Redis deny-list lookup — what gateway and
//     filestorage do;
//   - remote: POST /v1/validate over HTTP (keep-alive, loopback) to a real
//     auth server started in-process — the seed flow.
//
// Both report checks/s; on one core:
//
//	go test -run '^$' -bench ValidateRemote -cpu 1 ./internal/app
func BenchmarkValidateRemote(b *testing.B) {
	s := startAuth(b, map[string]string{"LOG_LEVEL": "warn", "LOGIN_MAX_FAILURES": "1000"})
	// 16 users' tokens and 240 service tokens (client credentials cost no bcrypt): 256 distinct tokens.
	tokens := make([]string, 0, 256)
	email := newEmail()
	s.signup(b, email, password)
	for range 16 {
		tokens = append(tokens, "Bearer "+s.login(b, email, password).AccessToken)
	}
	for len(tokens) < 256 {
		r := s.do(b, "POST", "/v1/token", map[string]string{"grant_type": "client_credentials", "client_id": "gateway", "client_secret": serviceClientSecret})
		var t struct {
			AccessToken string `json:"access_token"`
		}
		r.json(b, &t)
		tokens = append(tokens, "Bearer "+t.AccessToken)
	}

	b.Run("local", func(b *testing.B) {
		ctx := testenv.Context(b, 5*time.Minute)
		keys, err := authn.JWKSFromURL(ctx, s.base+authn.JWKSPath, authn.JWKSOptions{})
		if err != nil {
			b.Fatal(err)
		}
		v, err := authn.New(authn.Options{Issuer: authn.DefaultIssuer, Audience: authn.DefaultAudience,
			Keys: keys, DenyList: s.rdb, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		h := authn.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
		var next atomic.Uint64
		b.SetParallelism(16)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			req := httptest.NewRequest("GET", "/", nil)
			for pb.Next() {
				req.Header.Set("Authorization", tokens[next.Add(1)%uint64(len(tokens))])
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 204 {
					b.Errorf("local: %d %s", rec.Code, rec.Body)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
	})

	b.Run("remote", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		var next atomic.Uint64
		b.SetParallelism(16)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("POST", s.base+"/v1/validate", bytes.NewReader(nil))
				req.Header.Set("Authorization", tokens[next.Add(1)%uint64(len(tokens))])
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("remote: %d", resp.StatusCode)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
	})
}
