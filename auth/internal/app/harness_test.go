package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// syncBuffer collects the service's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// authServer is a real auth service on an ephemeral loopback port, with its
// own PostgreSQL database and Redis key prefix, both removed when the test
// ends.
type authServer struct {
	base   string
	dbURL  string
	prefix string
	env    map[string]string
	logs   *syncBuffer
	main   *service.Main
	rdb    *redis.Client
	pg     *pgxpool.Pool // the service's database, for checks
	client *http.Client
}

// serviceClientSecret is the secret of the "gateway" client in tests.
const serviceClientSecret = "gateway-secret-0123456789"

// startAuth starts auth with the test defaults, overridden by extra (a
// DATABASE_URL in extra shares that database), and waits until it is ready.
func startAuth(tb testing.TB, extra map[string]string) *authServer {
	tb.Helper()
	s := openAuth(tb, extra)
	testenv.Eventually(tb, 20*time.Second, func() bool { return s.readyz(tb) == 200 }, "auth not ready:\n%s", s.logs.String())
	return s
}

// readyz returns the status of /readyz (0 when auth does not answer).
func (s *authServer) readyz(tb testing.TB) int {
	tb.Helper()
	resp, err := s.client.Get(s.base + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// openAuth starts auth like startAuth without waiting for it to be ready.
func openAuth(tb testing.TB, extra map[string]string) *authServer {
	tb.Helper()
	id := fmt.Sprintf("%d", time.Now().UnixNano())
	s := &authServer{
		prefix: "authtest:" + id + ":",
		logs:   &syncBuffer{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	s.env = map[string]string{
		"PORT":             "0",
		"REDIS_ADDR":       testenv.RedisAddr(tb),
		"CONSUL_HTTP_ADDR": testenv.ConsulAddr(tb),
		"REDIS_KEY_PREFIX": s.prefix,
		"BCRYPT_COST":      "10",
		"LOG_LEVEL":        "debug",
		"SHUTDOWN_DELAY":   "0s", // nothing routes to a test instance through Consul
		"SERVICE_CLIENTS":  "gateway:" + serviceClientSecret + ":storage:admin storage:read,converter:sha256:" + sha256hex("converter-secret-0123456789") + ":storage:read",
	}
	for k, v := range extra {
		s.env[k] = v
	}
	if s.env["DATABASE_URL"] == "" {
		s.env["DATABASE_URL"] = testenv.NewDatabase(tb) // dropped when the test ends
	}
	s.dbURL = s.env["DATABASE_URL"]
	s.rdb = redis.NewClient(&redis.Options{Addr: s.env["REDIS_ADDR"]})
	pg, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	s.pg = pg
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.pg.Close()
		s.flushRedis(ctx)
		_ = s.rdb.Close()
	})
	// A name of its own: test instances must never be routed to as "auth".
	spec := app.Spec("test")
	spec.Name = "auth-test-" + id
	s.main = service.NewMain(spec, func(k string) string { return s.env[k] }, s.logs)
	if err := s.main.Open(testenv.Context(tb, 30*time.Second)); err != nil {
		tb.Fatalf("open auth: %v\n%s", err, s.logs.String())
	}
	tb.Cleanup(func() { _ = s.main.Close() })
	s.base = "http://" + s.main.Addr()
	return s
}

// flushRedis deletes this server's keys (its prefix); deny-list keys are
// deleted by the tests that write them.
func (s *authServer) flushRedis(ctx context.Context) {
	iter := s.rdb.Scan(ctx, 0, s.prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		s.rdb.Del(ctx, keys...)
	}
}

// do sends a request; body is sent as is when it is a string, else as JSON.
func (s *authServer) do(tb testing.TB, method, path string, body any, hdr ...string) testenv.Response {
	tb.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd, ct = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return testenv.DoWith(tb, s.client, req)
}
