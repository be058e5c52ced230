// Package testenv gives tests the addresses of the real dependencies that
// `make up` and `make test` start (scripts/deps.sh): Consul, RabbitMQ, Redis,
// the MongoDB-compatible database and the SMTP sink.
//
// Every helper checks that its dependency answers and fails the test with a
// message naming it when it does not; none of them ever skips.
//
// A fault test stops a dependency the other packages' tests share. The
// helpers for Consul, RabbitMQ and the database therefore hold a shared lock
// on it until the test ends, and the fault test takes the exclusive lock
// (ConsulExclusive, RabbitMQExclusive, MongoExclusive): it waits until no
// other test uses the dependency, from any test binary, and keeps it to
// itself until it ends. A test holding an exclusive lock must not call the
// shared helper of the same dependency (it would wait for itself).
//
// It also holds the helpers tests of every module share: HTTP answers
// (Response, Do), raw AMQP (PublishRaw, DeleteQueues), clean-up of test
// databases (NewDatabase, DropMongoDatabases) and processes (StartProcess).
// What starts one service for tests is that service's harness, which by
// one rule is the package internal/<service>test of the service: authtest,
// filestoragetest, gatewaytest, convertertest and notifiertest.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Default addresses, the same as the services' own defaults.
const (
	DefaultConsulAddr = "127.0.0.1:8500"
	DefaultAMQPURL    = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultRedisAddr  = "127.0.0.1:6379"
	DefaultMongoURI   = "mongodb://127.0.0.1:27017/"
	DefaultSMTPAddr   = "127.0.0.1:1025"
	DefaultMailDevURL = "http://127.0.0.1:1080"
)

const hint = "start the dependencies with `make deps` (scripts/deps.sh start)"

// Names of the dependencies the lock files are named after.
const (
	lockConsul   = "consul"
	lockRabbitMQ = "rabbitmq"
	lockMongo    = "mongodb"
)

// ConsulAddr returns the host:port of the Consul agent's HTTP API
// (CONSUL_HTTP_ADDR), failing tb when nothing listens there. The test holds a
// shared lock on the agent until it ends.
func ConsulAddr(tb testing.TB) string {
	tb.Helper()
	return locked(tb, lockConsul, syscall.LOCK_SH, consulAddr)
}

// ConsulExclusive is ConsulAddr for a test that stops or restarts the agent.
func ConsulExclusive(tb testing.TB) string {
	tb.Helper()
	return locked(tb, lockConsul, syscall.LOCK_EX, consulAddr)
}

// locked takes the lock name (how: syscall.LOCK_SH or LOCK_EX) for the rest
// of the test, then returns what get finds.
func locked(tb testing.TB, name string, how int, get func(testing.TB) string) string {
	tb.Helper()
	lock(tb, name, how)
	return get(tb)
}

// ConsulToken returns the ACL token tests send to the stack's Consul agent
// (as CONSUL_HTTP_TOKEN to the services they start, and with their own
// requests): the secret "test" of var/data/consul-tokens.env, which
// scripts/deps.sh creates with a policy that may register and read any
// service and node (docs/security.md). It is empty when the stack has no
// such file: an agent without ACLs takes anonymous requests.
func ConsulToken(tb testing.TB) string {
	tb.Helper()
	token, err := stackSecret(consulTokensFile, "test")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !stackFileExists(consulTokensFile) {
			return ""
		}
		tb.Fatalf("testenv: the stack's Consul test token: %v; start the stack with `make up`", err)
	}
	return token
}

// ConsulHeader sets the X-Consul-Token header of req to ConsulToken, for
// a test's own requests to the agent's HTTP API.
func ConsulHeader(tb testing.TB, req *http.Request) {
	tb.Helper()
	if token := ConsulToken(tb); token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
}

// consulTokensFile holds the stack's Consul ACL tokens under var/data.
const consulTokensFile = "consul-tokens.env"

func consulAddr(tb testing.TB) string {
	tb.Helper()
	addr := env("CONSUL_HTTP_ADDR", DefaultConsulAddr)
	mustDial(tb, "Consul agent", "CONSUL_HTTP_ADDR", addr)
	return addr
}

// AMQPURL returns the RabbitMQ URL (AMQP_URL), failing tb when the broker
// does not answer. The test holds a shared lock on the broker until it ends.
func AMQPURL(tb testing.TB) string {
	tb.Helper()
	return locked(tb, lockRabbitMQ, syscall.LOCK_SH, amqpURL)
}

// RabbitMQExclusive is AMQPURL for a test that stops or restarts the broker.
func RabbitMQExclusive(tb testing.TB) string {
	tb.Helper()
	return locked(tb, lockRabbitMQ, syscall.LOCK_EX, amqpURL)
}

func amqpURL(tb testing.TB) string {
	tb.Helper()
	raw := env("AMQP_URL", DefaultAMQPURL)
	mustDial(tb, "RabbitMQ", "AMQP_URL", urlHost(tb, "AMQP_URL", raw, "5672"))
	return raw
}

// urlHost returns the first host:port of the URL raw (the value of the
// variable name), with defaultPort when it names none.
func urlHost(tb testing.TB, name, raw, defaultPort string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("testenv: %s %q is not a URL: %v", name, raw, err)
	}
	host, _, _ := strings.Cut(u.Host, ",") // a replica set lists several
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, defaultPort)
	}
	return host
}

// RedisAddr returns the host:port of Redis (REDIS_ADDR), failing tb when
// nothing listens there.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	addr := env("REDIS_ADDR", DefaultRedisAddr)
	mustDial(tb, "Redis", "REDIS_ADDR", addr)
	return addr
}

// MongoURI returns the URI of the MongoDB-compatible database (MONGO_URI),
// failing tb when its first host does not answer. The test holds a shared
// lock on the database until it ends.
func MongoURI(tb testing.TB) string {
	tb.Helper()
	return locked(tb, lockMongo, syscall.LOCK_SH, mongoURI)
}

// MongoExclusive is MongoURI for a test that stops or restarts the database.
func MongoExclusive(tb testing.TB) string {
	tb.Helper()
	return locked(tb, lockMongo, syscall.LOCK_EX, mongoURI)
}

func mongoURI(tb testing.TB) string {
	tb.Helper()
	raw := env("MONGO_URI", DefaultMongoURI)
	if strings.HasPrefix(raw, "mongodb://") {
		mustDial(tb, "MongoDB-compatible database", "MONGO_URI", urlHost(tb, "MONGO_URI", raw, "27017"))
	}
	return raw
}

// SMTPAddr returns the host:port of the SMTP sink (SMTP_ADDR), failing tb
// when nothing listens there.
func SMTPAddr(tb testing.TB) string {
	tb.Helper()
	addr := env("SMTP_ADDR", DefaultSMTPAddr)
	mustDial(tb, "SMTP sink (MailDev)", "SMTP_ADDR", addr)
	return addr
}

// MailDevURL returns the base URL of MailDev's web UI and REST API
// (MAILDEV_URL), failing tb when it does not answer.
func MailDevURL(tb testing.TB) string {
	tb.Helper()
	raw := env("MAILDEV_URL", DefaultMailDevURL)
	mustDial(tb, "MailDev web API", "MAILDEV_URL", urlHost(tb, "MAILDEV_URL", raw, "80"))
	return raw
}

// Context returns a context cancelled when the test ends or after d,
// whichever comes first.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every 50 ms until it returns true or timeout passes,
// then fails tb with msg.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustDial(tb testing.TB, what, variable, addr string) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		tb.Fatalf("testenv: %s is not reachable at %s (%s): %v; %s", what, addr, variable, err, hint)
	}
	_ = conn.Close()
}

// lock takes the lock (how: syscall.LOCK_SH or LOCK_EX) on the dependency
// name and releases it when the test ends.
func lock(tb testing.TB, name string, how int) {
	tb.Helper()
	path := filepath.Join(os.TempDir(), "audiomill-test-"+name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		tb.Fatalf("testenv: open the %s lock %s: %v", name, path, err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		_ = f.Close()
		tb.Fatalf("testenv: lock %s: %v", path, err)
	}
	tb.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	})
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Describe returns a one-line summary of the addresses in use, for test logs.
func Describe() string {
	return fmt.Sprintf("consul=%s amqp=%s redis=%s mongo=%s smtp=%s",
		env("CONSUL_HTTP_ADDR", DefaultConsulAddr), env("AMQP_URL", DefaultAMQPURL),
		env("REDIS_ADDR", DefaultRedisAddr), env("MONGO_URI", DefaultMongoURI), env("SMTP_ADDR", DefaultSMTPAddr))
}

// LogBuffer collects log output written from many goroutines (a server's, a
// connection's) for a test to read.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
