// Package pgdb gives a service its PostgreSQL: a pgx connection pool with
// bounded timeouts (statements are prepared and cached per connection, pgx's
// default), the readiness check that pings it, the versioned migrations that
// build its schema (tern, under PostgreSQL's advisory lock), and the
// translation of driver errors into errs codes.
//
// Each service owns one database and one role (docs/configuration.md,
// "Dependencies");
// DATABASE_URL names them.
package pgdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/errs"
)

// Defaults for Config.
const (
	DefaultMaxConns       = 16
	DefaultConnectTimeout = 2 * time.Second
	// DefaultTimeout bounds every statement: the pool sets it as the
	// server's statement_timeout, so a query that hangs (a lock, a stopped
	// server's half-open socket) fails instead of holding a request.
	DefaultTimeout = 10 * time.Second
)

// Config is where the database is and how to use it.
type Config struct {
	URL            string        // DATABASE_URL
	MaxConns       int32         // DATABASE_MAX_CONNS
	ConnectTimeout time.Duration // dialing one server
	Timeout        time.Duration // statement_timeout
}

// DefaultURL returns the database URL a service uses when DATABASE_URL is
// unset: its own database and role of the same name on the local server.
func DefaultURL(database string) string {
	return (&url.URL{Scheme: "postgres", User: url.User(database), Host: "127.0.0.1:5432", Path: "/" + database}).String()
}

// ReadConfig reads DATABASE_URL (default defaultURL) and DATABASE_MAX_CONNS. A
// URL that is not a PostgreSQL connection string fails naming the variable.
func ReadConfig(r *config.Reader, defaultURL string) Config {
	cfg := Config{
		URL:            r.String("DATABASE_URL", defaultURL),
		MaxConns:       int32(r.Int("DATABASE_MAX_CONNS", DefaultMaxConns)),
		ConnectTimeout: DefaultConnectTimeout,
		Timeout:        DefaultTimeout,
	}
	if _, err := poolConfig(cfg); err != nil {
		r.Fail("DATABASE_URL", "is not a PostgreSQL connection string (postgres://user:password@host:port/database): %s", redact(err))
	}
	if cfg.MaxConns < 1 || cfg.MaxConns > 1000 {
		r.Fail("DATABASE_MAX_CONNS", "must be between 1 and 1000")
	}
	return cfg
}

// redact returns the parse error's text without the connection string
// (which may hold a password): pgx quotes it in some errors.
func redact(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap().Error()
	}
	if errors.As(err, &pe) {
		return "malformed"
	}
	return err.Error()
}

func poolConfig(cfg Config) (*pgxpool.Config, error) {
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("want a postgres:// URL")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	pc.ConnConfig.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout)
	if _, set := pc.ConnConfig.RuntimeParams["statement_timeout"]; !set {
		pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(cmp.Or(cfg.Timeout, DefaultTimeout).Milliseconds())
	}
	// A connection idle for long may have been cut by a server restart:
	// check it before handing it out again.
	pc.HealthCheckPeriod = 5 * time.Second
	return pc, nil
}

// Connect returns a pool for cfg. It does not dial: connections open on
// first use, so a service starts while the database is down and /readyz
// reports it.
func Connect(cfg Config) (*pgxpool.Pool, error) {
	pc, err := poolConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres config: %s", redact(err))
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}

// Ping is the readiness check: nil when the server answers.
func Ping(pool *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres ping: %w", err)
		}
		return nil
	}
}

// SQLState codes this package names.
const (
	uniqueViolation      = "23505"
	serializationFailure = "40001"
	deadlockDetected     = "40P01"
	queryCanceled        = "57014" // statement_timeout
	undefinedTable       = "42P01" // the schema is not migrated yet
)

// IsUniqueViolation reports whether err is a unique-constraint violation,
// of constraint when it is not empty.
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == uniqueViolation && (constraint == "" || pe.ConstraintName == constraint)
}

// IsNotFound reports whether err says a query returned no row.
func IsNotFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// Err wraps err with what (e.g. "jobs: insert 42") and, when the database
// could not be reached or the statement could not finish (a connection
// refused or cut, a deadline, the server shutting down, a statement
// timeout, a transaction to retry), marks it errs.Unavailable with the
// message "the <name> database is unavailable", so callers answer 503
// rather than 500. Other errors are returned wrapped, uncoded.
func Err(err error, name, what string) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", what, err)
	if Unavailable(err) {
		return errs.Wrap(err, errs.Unavailable, "the %s database is unavailable", name)
	}
	return err
}

// Unavailable reports whether err says the database did not answer or the
// statement could be retried: a failure to connect, a connection cut, a
// deadline, a statement timeout, the server shutting down (SQLSTATE class
// 08, 53, 57P), a serialization failure, a deadlock, or a table that does
// not exist yet (a database whose schema is still being migrated: the
// readiness check "schema" fails meanwhile).
func Unavailable(err error) bool {
	if errs.DependencyDown(err) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == queryCanceled, pe.Code == serializationFailure, pe.Code == deadlockDetected,
			pe.Code == undefinedTable:
			return true
		case len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:2] == "53" || pe.Code[:3] == "57P"):
			return true
		}
		return false
	}
	// A connection cut under a query (the server stopped) surfaces as an
	// EOF or a network error without a PgError.
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne)
}
