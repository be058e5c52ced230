// Package filestoragetest runs the real filestorage service for tests and
// benchmarks: the program's own wiring on an ephemeral port, against the
// real database, Redis and Consul, with tokens signed by a test key.
//
// It follows the rule of every service's test harness: the package
// internal/<service>test of the service (see auth's internal/authtest).
package filestoragetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/audiomill/audiomill/filestorage/internal/app"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

var seq atomic.Int64

// Service is a running filestorage.
type Service struct {
	// URL is the base URL ("http://127.0.0.1:port").
	URL  string
	Main *service.Main
	// Database is the MongoDB database name (gridfs backend).
	Database string
	// Dir is the disk backend's directory.
	Dir  string
	priv ed25519.PrivateKey
}

// Start runs filestorage in this process with backend ("gridfs" or "disk")
// and env overriding the defaults, and stops it (dropping its database)
// when tb ends.
func Start(tb testing.TB, backend string, env map[string]string) *Service {
	tb.Helper()
	s, vars := prepare(tb, backend, env)
	out := io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	spec := app.Spec("test")
	spec.Name = "filestorage-test" // never routed to as "filestorage"
	m := service.NewMain(spec, func(k string) string { return vars[k] }, out)
	if err := m.Open(context.Background()); err != nil {
		tb.Fatalf("start filestorage: %v", err)
	}
	s.Main = m
	s.URL = "http://" + m.Addr()
	tb.Cleanup(func() {
		_ = m.Close()
		testenv.DropMongoDatabases(vars["MONGO_URI"], s.Database)
	})
	return s
}

// prepare makes the Service's keys and names and the environment to run it with.
func prepare(tb testing.TB, backend string, env map[string]string) (*Service, map[string]string) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	n := seq.Add(1)
	s := &Service{
		Database: fmt.Sprintf("fs_svc_%d_%d", time.Now().UnixNano()%1e9, n),
		Dir:      tb.TempDir(),
		priv:     priv,
	}
	vars := map[string]string{
		"PORT":                "0",
		"BIND_ADDR":           "127.0.0.1",
		"LOG_LEVEL":           "warn",
		"SHUTDOWN_DELAY":      "0s", // no edge routes to a test instance
		"SERVICE_ID":          fmt.Sprintf("filestorage-test-%d-%d", os.Getpid(), n),
		"CONSUL_HTTP_ADDR":    testenv.ConsulAddr(tb),
		"CONSUL_HTTP_TOKEN":   testenv.ConsulToken(tb),
		"REDIS_ADDR":          testenv.RedisAddr(tb),
		"MONGO_URI":           testenv.MongoURI(tb),
		"MONGO_DATABASE":      s.Database,
		"AUTH_PUBLIC_KEY":     base64.StdEncoding.EncodeToString(pub),
		"AUTH_PUBLIC_KEY_ID":  "test",
		"FILESTORAGE_BACKEND": backend,
		"FILESTORAGE_DIR":     s.Dir,
	}
	for k, v := range env {
		vars[k] = v
	}
	return s, vars
}

// Token returns a valid access token for subject with scopes.
func (s *Service) Token(tb testing.TB, subject string, scopes ...string) string {
	tb.Helper()
	now := time.Now()
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	claims := authn.Claims{
		Roles: []string{"user"},
		Scope: strings.Join(scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: authn.DefaultIssuer, Audience: jwt.ClaimStrings{authn.DefaultAudience}, Subject: subject,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			ID: base64.RawURLEncoding.EncodeToString(jti[:]),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = "test"
	raw, err := tok.SignedString(s.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}
