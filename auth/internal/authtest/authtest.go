// Package authtest runs auth for tests: the program's own wiring
// (app.Spec) in-process on an ephemeral loopback port, against the real
// PostgreSQL (a database of its own) and Redis (a key prefix of its own),
// both removed when the test ends.
//
// Every service's test harness follows one rule: it is the package
// internal/<service>test of that service (authtest, filestoragetest,
// gatewaytest, convertertest, notifiertest), which starts the service, or
// what its tests need around it, against the real dependencies; helpers
// that are not about one service live in platform/testenv.
package authtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/auth/internal/web"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// ClientSecret is the secret of the "gateway" service client in tests.
const ClientSecret = "gateway-secret-0123456789"

// ConverterSecret is the secret of the "converter" service client in
// tests, which auth is given as its SHA-256 only.
const ConverterSecret = "converter-secret-0123456789"

// KEKFor is the key-encryption key (AUTH_KEK) the harness gives auth for
// the database databaseURL: derived from it, so that replicas started on
// one database open each other's signing keys. A test of a wrong key sets
// AUTH_KEK itself.
func KEKFor(databaseURL string) string {
	sum := sha256.Sum256([]byte("authtest KEK\x00" + databaseURL))
	return hex.EncodeToString(sum[:])
}

// Server is a running auth.
type Server struct {
	// URL is the base URL ("http://127.0.0.1:port").
	URL string
	// DatabaseURL is its PostgreSQL database (DATABASE_URL).
	DatabaseURL string
	// Prefix starts its Redis keys (REDIS_KEY_PREFIX).
	Prefix string
	// Env is the environment it runs with.
	Env  map[string]string
	Logs *testenv.LogBuffer
	Main *service.Main
	// Redis and DB reach its Redis and database, for checks.
	Redis *redis.Client
	DB    *pgxpool.Pool
	// Client sends the requests of Do.
	Client *http.Client
	// AMQPURL is its broker: a virtual host of the test's own (unless
	// extra names AMQP_URL), where MailQueue receives its account events.
	AMQPURL   string
	MailQueue string
}

// Start starts auth with the test defaults, overridden by extra (a
// DATABASE_URL in extra shares that database), and waits until it is ready.
func Start(tb testing.TB, extra map[string]string) *Server {
	tb.Helper()
	s := Open(tb, extra)
	testenv.Eventually(tb, 20*time.Second, func() bool { return s.Readyz(tb) == 200 }, "auth not ready:\n%s", s.Logs.String())
	return s
}

// Readyz returns the status of /readyz (0 when auth does not answer).
func (s *Server) Readyz(tb testing.TB) int {
	tb.Helper()
	resp, err := s.Client.Get(s.URL + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Open starts auth like Start without waiting for it to be ready.
func Open(tb testing.TB, extra map[string]string) *Server {
	tb.Helper()
	id := fmt.Sprintf("%d", time.Now().UnixNano())
	s := &Server{
		Prefix: "authtest:" + id + ":",
		Logs:   &testenv.LogBuffer{},
		Client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	converterHash := sha256.Sum256([]byte(ConverterSecret))
	s.Env = map[string]string{
		"PORT":              "0",
		"REDIS_ADDR":        testenv.RedisAddr(tb),
		"CONSUL_HTTP_ADDR":  testenv.ConsulAddr(tb),
		"CONSUL_HTTP_TOKEN": testenv.ConsulToken(tb),
		"REDIS_KEY_PREFIX":  s.Prefix,
		"BCRYPT_COST":       "10",
		"LOG_LEVEL":         "debug",
		"SHUTDOWN_DELAY":    "0s", // nothing routes to a test instance through Consul
		"SERVICE_CLIENTS": "gateway:" + ClientSecret + ":storage:admin storage:read,converter:sha256:" +
			hex.EncodeToString(converterHash[:]) + ":storage:read",
		// Every test signs up from 127.0.0.1; the tests of the limit set it.
		"SIGNUP_MAX_PER_CLIENT": "100000",
	}
	for k, v := range extra {
		s.Env[k] = v
	}
	if s.Env["AMQP_URL"] == "" {
		s.Env["AMQP_URL"] = testenv.VHost(tb)
		s.MailQueue = "authtest-mail"
		testenv.BindQueue(tb, s.Env["AMQP_URL"], s.MailQueue, events.TypeAccountVerify, events.TypeAccountExists)
	}
	s.AMQPURL = s.Env["AMQP_URL"]
	if s.Env["DATABASE_URL"] == "" {
		s.Env["DATABASE_URL"] = testenv.NewDatabase(tb) // dropped when the test ends
	}
	if _, ok := s.Env["AUTH_KEK"]; !ok && s.Env["AUTH_KEK_FILE"] == "" {
		s.Env["AUTH_KEK"] = KEKFor(s.Env["DATABASE_URL"])
	}
	s.DatabaseURL = s.Env["DATABASE_URL"]
	s.Redis = redis.NewClient(&redis.Options{Addr: s.Env["REDIS_ADDR"]})
	pg, err := pgxpool.New(context.Background(), s.DatabaseURL)
	if err != nil {
		tb.Fatal(err)
	}
	s.DB = pg
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.DB.Close()
		s.FlushRedis(ctx)
		_ = s.Redis.Close()
	})
	// A name of its own: test instances must never be routed to as "auth".
	spec := app.Spec("test")
	spec.Name = "auth-test-" + id
	s.Main = service.NewMain(spec, func(k string) string { return s.Env[k] }, s.Logs)
	if err := s.Main.Open(testenv.Context(tb, 30*time.Second)); err != nil {
		tb.Fatalf("open auth: %v\n%s", err, s.Logs.String())
	}
	tb.Cleanup(func() { _ = s.Main.Close() })
	s.URL = "http://" + s.Main.Addr()
	return s
}

// FlushRedis deletes this server's keys (its prefix); deny-list keys are
// deleted by the tests that write them.
func (s *Server) FlushRedis(ctx context.Context) {
	iter := s.Redis.Scan(ctx, 0, s.Prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		s.Redis.Del(ctx, keys...)
	}
}

// Do sends a request to path; body is sent as is when it is a string, else
// as JSON; hdr are header names and values.
func (s *Server) Do(tb testing.TB, method, path string, body any, hdr ...string) testenv.Response {
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
	req := testenv.NewRequest(tb, method, s.URL+path, rd, ct, "")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return testenv.DoWith(tb, s.Client, req)
}

// Signup signs up email with password pw (202, the neutral answer) and
// returns the account as the database holds it.
func (s *Server) Signup(tb testing.TB, email, pw string) web.Account {
	tb.Helper()
	r := s.Do(tb, "POST", "/v1/users", map[string]string{"email": email, "password": pw})
	if r.Status != http.StatusAccepted {
		tb.Fatalf("signup %s: %d %s", email, r.Status, r.Body)
	}
	var a web.Account
	err := s.DB.QueryRow(testenv.Context(tb, 10*time.Second),
		`select id, email, roles, created_at from users where lower(email) = lower($1)`, strings.TrimSpace(email)).
		Scan(&a.ID, &a.Email, &a.Roles, &a.CreatedAt)
	if err != nil {
		tb.Fatalf("signup %s: account not in the database: %v", email, err)
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a
}

// NextMail returns the next account event auth published (from MailQueue),
// as its envelope.
func (s *Server) NextMail(tb testing.TB) broker.Envelope {
	tb.Helper()
	if s.MailQueue == "" {
		tb.Fatal("authtest: this server's AMQP_URL was given by the test; it has no mail queue")
	}
	env, err := broker.DecodeEnvelope(testenv.NextMessage(tb, s.AMQPURL, s.MailQueue, 10*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// VerificationFor returns the verification link's payload of the next
// account event, which must be an account.verify for email.
func (s *Server) VerificationFor(tb testing.TB, email string) events.AccountVerify {
	tb.Helper()
	env := s.NextMail(tb)
	p, err := events.Decode[events.AccountVerify](env.Payload)
	if env.Type != events.TypeAccountVerify || err != nil || p.Email != strings.ToLower(strings.TrimSpace(email)) {
		tb.Fatalf("want the account.verify of %s, got %s %s (%v)", email, env.Type, env.Payload, err)
	}
	return p
}

// Login logs email in with password pw.
func (s *Server) Login(tb testing.TB, email, pw string) web.TokenResponse {
	tb.Helper()
	r := s.Do(tb, "POST", "/v1/token", map[string]string{"email": email, "password": pw})
	if r.Status != 200 {
		tb.Fatalf("login %s: %d %s", email, r.Status, r.Body)
	}
	var t web.TokenResponse
	r.JSON(tb, &t)
	return t
}
