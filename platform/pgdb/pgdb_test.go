package pgdb_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/pgdb"
	"github.com/audiomill/audiomill/platform/testenv"
)

// openDB returns a pool on a fresh, empty database.
func openDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testenv.NewPool(t, testenv.NewDatabase(t), nil)
}

// exists reports whether the relation (table or index) name exists.
func exists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "select to_regclass($1) is not null", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

var good = fstest.MapFS{
	"001_accounts.sql": {Data: []byte("create table accounts (id text primary key, email text not null);\n")},
}

// broken is good plus a 002 whose first statements succeed and whose last
// one fails: none of it may stay.
var broken = fstest.MapFS{
	"001_accounts.sql": good["001_accounts.sql"],
	"002_broken.sql": {Data: []byte(`create table half (id bigint primary key);
create index accounts_email on accounts (email);
alter table accounts add column created_at timestamptz;
create index half_missing on half (no_such_column);
`)},
}

func TestMigrateFailureLeavesSchemaAsItWas(t *testing.T) {
	pool := openDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	if err := pgdb.Migrate(ctx, pool, good); err != nil {
		t.Fatal(err)
	}
	err := pgdb.Migrate(ctx, pool, broken)
	if err == nil {
		t.Fatal("a broken migration succeeded")
	}
	if !strings.Contains(err.Error(), "002_broken") {
		t.Fatalf("error %q does not name the migration", err)
	}
	v, verr := pgdb.Version(ctx, pool)
	if verr != nil || v != 1 {
		t.Fatalf("version after the failure = %d, %v; want 1", v, verr)
	}
	for _, name := range []string{"half", "accounts_email"} {
		if exists(t, pool, name) {
			t.Errorf("%s of the failed migration exists", name)
		}
	}
	var cols int
	if err := pool.QueryRow(ctx, "select count(*) from information_schema.columns where table_name = 'accounts'").Scan(&cols); err != nil || cols != 2 {
		t.Errorf("accounts has %d columns (%v); want the 2 of 001", cols, err)
	}
	// The service's readiness check fails with the reason, and a retry
	// fails the same way, leaving the schema as it was.
	s := pgdb.NewSchema(pool, broken, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for attempt := 1; attempt <= 2; attempt++ {
		if s.TryOnce(ctx) == nil {
			t.Fatalf("TryOnce of a broken migration succeeded (attempt %d)", attempt)
		}
	}
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "002_broken") {
		t.Fatalf("readiness check = %v; want the failed migration named", err)
	}
	select {
	case <-s.Ready():
		t.Fatal("Ready is closed although the schema is not migrated")
	default:
	}
	if v, _ := pgdb.Version(ctx, pool); v != 1 || exists(t, pool, "half") {
		t.Fatalf("after retries: version %d, half exists %v", v, exists(t, pool, "half"))
	}
}

func TestMigrateFirstMigrationFailsLeavesNothing(t *testing.T) {
	pool := openDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	bad := fstest.MapFS{"001_bad.sql": {Data: []byte("create table t1 (id int);\nselect no_such_function();\n")}}
	if err := pgdb.Migrate(ctx, pool, bad); err == nil {
		t.Fatal("accepted")
	}
	if v, err := pgdb.Version(ctx, pool); err != nil || v != 0 {
		t.Fatalf("version = %d, %v; want 0", v, err)
	}
	if exists(t, pool, "t1") {
		t.Fatal("t1 of the failed migration exists")
	}
}

func TestMigrateReplicasAtOnce(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testenv.Context(t, 60*time.Second)
	fsys := fstest.MapFS{
		"001_accounts.sql": good["001_accounts.sql"],
		"002_counter.sql":  {Data: []byte("create table counter (n int);\ninsert into counter values (1);\n")},
	}
	const replicas = 4
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		pool, err := pgdb.Connect(pgdb.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = pgdb.Migrate(ctx, pool, fsys) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	pool, err := pgdb.Connect(pgdb.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from counter").Scan(&n); err != nil || n != 1 {
		t.Fatalf("002 ran %d times (%v); want once", n, err)
	}
	if v, err := pgdb.Version(ctx, pool); err != nil || v != 2 {
		t.Fatalf("version = %d, %v; want 2", v, err)
	}
}

func TestReadConfigBadInput(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		bad  string // the variable the error must name
	}{
		{"ErrNotAURL", map[string]string{"DATABASE_URL": "not a url"}, "DATABASE_URL"},
		{"ErrOtherScheme", map[string]string{"DATABASE_URL": "mysql://u:hunter2secret@127.0.0.1/db"}, "DATABASE_URL"},
		{"ErrMongoURL", map[string]string{"DATABASE_URL": "mongodb://127.0.0.1:27017/db"}, "DATABASE_URL"},
		{"ErrBadPort", map[string]string{"DATABASE_URL": "postgres://u:hunter2secret@127.0.0.1:notaport/db"}, "DATABASE_URL"},
		{"ErrBadOption", map[string]string{"DATABASE_URL": "postgres://u:hunter2secret@127.0.0.1/db?sslmode=sometimes"}, "DATABASE_URL"},
		{"ErrMaxConnsZero", map[string]string{"DATABASE_MAX_CONNS": "0"}, "DATABASE_MAX_CONNS"},
		{"ErrMaxConnsNotANumber", map[string]string{"DATABASE_MAX_CONNS": "many"}, "DATABASE_MAX_CONNS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := config.NewReader(func(k string) string { return tt.env[k] })
			pgdb.ReadConfig(r, pgdb.DefaultURL("audiomill_test"))
			err := r.Err()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.bad) {
				t.Fatalf("error %q does not name %s", err, tt.bad)
			}
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	r := config.NewReader(func(string) string { return "" })
	if cfg := pgdb.ReadConfig(r, pgdb.DefaultURL("audiomill_test")); r.Err() != nil || cfg.URL != "postgres://audiomill_test@127.0.0.1:5432/audiomill_test" {
		t.Fatalf("default: %+v %v", cfg, r.Err())
	}
}
