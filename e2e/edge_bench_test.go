package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
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
		b.Run(tc.name, func(b *testing.B) { testenv.BenchGET(b, tc.url, tc.token, benchConcurrency) })
	}
}

// signUp creates a user through the edge and returns an access token.
func signUp(tb testing.TB, e *stack.Edge) string {
	tb.Helper()
	return signUpAccount(tb, e).token
}

// signUpAccount creates a user through the edge (its address unverified)
// and logs it in.
func signUpAccount(tb testing.TB, e *stack.Edge) user {
	tb.Helper()
	u := user{email: fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano()), password: "bench-password-1"}
	creds := fmt.Sprintf(`{"email":%q,"password":%q}`, u.email, u.password)
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
			u.token = tok.AccessToken
			return u
		}
	}
	tb.Fatal("no access token from auth")
	return u
}
