package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/pgdb"
)

// PostgresTestRole is the role the stack creates for tests (CREATEDB, no
// other privilege); scripts/deps.sh writes its password to
// var/data/postgres.env as "test=<password>".
const PostgresTestRole = "audiomill_test"

const lockPostgres = "postgres"

// PostgresURL returns the URL tests connect to PostgreSQL with as the test
// role (TEST_DATABASE_URL, or the role scripts/deps.sh created, on
// 127.0.0.1:5432), failing tb when the server does not answer. The test
// holds a shared lock on the server until it ends.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	lock(tb, lockPostgres, syscall.LOCK_SH)
	return postgresURL(tb)
}

// PostgresExclusive is PostgresURL for a test that stops or restarts the server.
func PostgresExclusive(tb testing.TB) string {
	tb.Helper()
	lock(tb, lockPostgres, syscall.LOCK_EX)
	return postgresURL(tb)
}

func postgresURL(tb testing.TB) string {
	tb.Helper()
	raw := os.Getenv("TEST_DATABASE_URL")
	if raw == "" {
		pw, err := stackSecret("postgres.env", "test")
		if err != nil {
			tb.Fatalf("testenv: PostgreSQL test role: %v; set TEST_DATABASE_URL or %s", err, hint)
		}
		raw = (&url.URL{Scheme: "postgres", User: url.UserPassword(PostgresTestRole, pw),
			Host: "127.0.0.1:5432", Path: "/postgres", RawQuery: "sslmode=disable"}).String() // loopback: no TLS
	}
	mustDial(tb, "PostgreSQL", "TEST_DATABASE_URL", urlHost(tb, "TEST_DATABASE_URL", raw, "5432"))
	return raw
}

// NewDatabase creates an empty database owned by the test role and returns
// its URL; the database is dropped when the test ends. The test holds a
// shared lock on the server.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return newDatabase(tb, PostgresURL(tb))
}

// NewDatabaseExclusive is NewDatabase for a test that also stops the server
// (it holds the exclusive lock).
func NewDatabaseExclusive(tb testing.TB) string {
	tb.Helper()
	return newDatabase(tb, PostgresExclusive(tb))
}

func newDatabase(tb testing.TB, admin string) string {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "audiomill_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("testenv: connect to PostgreSQL as the test role: %v; %s", err, hint)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "create database "+name); err != nil {
		tb.Fatalf("testenv: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// The server may be coming back from a fault test: retry a while.
		for {
			conn, err := pgx.Connect(ctx, admin)
			if err == nil {
				_, err = conn.Exec(ctx, "drop database if exists "+name+" with (force)")
				_ = conn.Close(context.Background())
			}
			if err == nil || ctx.Err() != nil {
				if err != nil {
					tb.Logf("testenv: drop database %s: %v", name, err)
				}
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// StackServiceSecret returns the secret of the running stack's service
// account id (scripts/service-accounts: gateway, converter, each with the
// scope storage:admin), which `make up` keeps in
// var/data/service-accounts.env; it fails tb, naming the file, when there
// is none.
func StackServiceSecret(tb testing.TB, id string) string {
	tb.Helper()
	secret, err := stackSecret("service-accounts.env", id)
	if err != nil || secret == "" {
		tb.Fatalf("testenv: the stack's service account %s: %v; start the stack with `make up`", id, err)
	}
	return secret
}

// stackDataPath returns the path of the stack's file name under var/data
// (AUDIOMILL_VAR_DIR, or var/ at the root of the repository, found by
// walking up to go.work).
func stackDataPath(name string) (string, error) {
	dir := os.Getenv("AUDIOMILL_VAR_DIR")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "var")
	}
	return filepath.Join(dir, "data", name), nil
}

// stackFileExists reports whether the stack's file name exists under var/data.
func stackFileExists(name string) bool {
	path, err := stackDataPath(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}

// stackSecret reads key from the stack's secrets file name under var/data.
func stackSecret(name, key string) (string, error) {
	path, err := stackDataPath(name)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return v, nil
		}
	}
	return "", &os.PathError{Op: "find " + key + "= in", Path: path, Err: os.ErrNotExist}
}

// repoRoot returns the directory holding go.work above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", &os.PathError{Op: "find", Path: "go.work", Err: os.ErrNotExist}
		}
		dir = parent
	}
}

// NewPool returns a pool on the database url, with the schema of
// migrations (tern files; none when nil) migrated, closed when tb ends.
func NewPool(tb testing.TB, url string, migrations fs.FS) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgdb.Connect(pgdb.Config{URL: url})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if migrations != nil {
		if err := pgdb.Migrate(Context(tb, 30*time.Second), pool, migrations); err != nil {
			tb.Fatalf("testenv: migrate %s: %v", redacted(url), err)
		}
	}
	return pool
}

// redacted returns the URL raw without its password, for messages.
func redacted(raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil {
		return "the database"
	}
	return parsed.Redacted()
}
