package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// VersionTable is the table in which tern records the schema's version.
const VersionTable = "schema_version"

// Migrate brings the database's schema up to the newest of the migrations
// in fsys (tern's files: 001_name.sql, 002_name.sql …, each its own
// transaction). Replicas starting at once are safe: tern holds a
// PostgreSQL advisory lock while it reads the version and migrates, so one
// migrates and the others then find nothing to do. A migration that fails
// is rolled back whole with its version update: the schema stays as it was.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return Err(err, "service's", "migrate: connect")
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable)
	if err != nil {
		return Err(err, "service's", "migrate: version table")
	}
	if err := m.LoadMigrations(fsys); err != nil {
		return fmt.Errorf("migrate: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		var me migrate.MigrationPgError
		if errors.As(err, &me) {
			return fmt.Errorf("migrate: migration %s failed (rolled back): %w", me.MigrationName, err)
		}
		return Err(err, "service's", "migrate")
	}
	return nil
}

// Version returns the schema's current version (0 before any migration).
func Version(ctx context.Context, pool *pgxpool.Pool) (int32, error) {
	var v int32
	err := pool.QueryRow(ctx, "select version from "+VersionTable).Scan(&v)
	if IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, Err(err, "service's", "schema version")
	}
	return v, nil
}

// Defaults of a Schema.
const (
	// DefaultMigrateTimeout bounds one attempt to migrate.
	DefaultMigrateTimeout = 30 * time.Second
	// DefaultMigrateRetry is the wait between attempts.
	DefaultMigrateRetry = 2 * time.Second
)

// Schema migrates a service's database at start and keeps trying in the
// background while the database is away, so a service starts (and reports
// itself not ready) before its database does. Its Check is the readiness
// check "schema": failing until the schema is at the newest version.
type Schema struct {
	pool   *pgxpool.Pool
	fsys   fs.FS
	logger *slog.Logger

	mu   sync.Mutex
	done bool
	err  error
	// ready is closed once the schema is migrated.
	ready chan struct{}
}

// NewSchema returns the Schema of pool, migrated from fsys.
func NewSchema(pool *pgxpool.Pool, fsys fs.FS, logger *slog.Logger) *Schema {
	return &Schema{pool: pool, fsys: fsys, logger: logger, err: errors.New("not migrated yet"), ready: make(chan struct{})}
}

// Run migrates once, and when that fails, again every DefaultMigrateRetry
// until it succeeds or ctx ends. It blocks; a service calls it from a
// goroutine (or once with a bounded ctx and then in the background).
func (s *Schema) Run(ctx context.Context) {
	for {
		if s.TryOnce(ctx) == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(DefaultMigrateRetry):
		}
	}
}

// TryOnce makes one attempt to migrate, bounded by DefaultMigrateTimeout,
// and returns its error (nil once migrated).
func (s *Schema) TryOnce(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done {
		return nil
	}
	mctx, cancel := context.WithTimeout(ctx, DefaultMigrateTimeout)
	err := Migrate(mctx, s.pool, s.fsys)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		s.logger.Warn("database schema not migrated; retrying", "err", err.Error())
		return err
	}
	if !s.done {
		s.done, s.err = true, nil
		close(s.ready)
		s.logger.Info("database schema migrated")
	}
	return nil
}

// Ready is closed once the schema is migrated.
func (s *Schema) Ready() <-chan struct{} { return s.ready }

// Check is the readiness check: nil once the schema is migrated.
func (s *Schema) Check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	return fmt.Errorf("database schema: %w", s.err)
}
