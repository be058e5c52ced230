package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/auth/internal/clients"
	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/auth/internal/ratelimit"
	"github.com/audiomill/audiomill/auth/internal/schema"
	"github.com/audiomill/audiomill/auth/internal/tokens"
	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/auth/internal/verify"
	"github.com/audiomill/audiomill/auth/internal/web"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/pgdb"
	limits "github.com/audiomill/audiomill/platform/ratelimit"
	"github.com/audiomill/audiomill/platform/service"
)

// Name is auth's name in Consul and the logs.
const Name = "auth"

// DefaultPort is auth's port when PORT is unset.
const DefaultPort = 8101

// Start-up work against the database (service clients, keys, admin) waits
// for the schema and is tried once within setupTimeout; when the database is not there yet it is retried in
// the background every setupRetryDelay, and /readyz reports "setup" failed
// until it succeeds.
const (
	setupTimeout    = 10 * time.Second
	setupRetryDelay = 2 * time.Second
)

// Spec returns the service.Spec of auth, with its commands rotate-keys
// and migrate-from-mongo.
func Spec(version string) service.Spec {
	return service.Spec{Name: Name, Version: version, DefaultPort: DefaultPort, Wire: Wire,
		Commands: []service.Command{
			{Name: "rotate-keys", Run: RotateKeys},
			{Name: "migrate-from-mongo", Run: MigrateFromMongo},
		}}
}

// Wire builds auth on app: configuration, PostgreSQL (its schema migrated),
// Redis, signing keys, service clients, the routes, the rotation schedule
// and the admin bootstrap.
func Wire(ctx context.Context, app *service.App) error {
	cfg := ReadConfig(app.Env)
	pool, dbSchema, err := app.Postgres(ctx, DefaultDatabase, schema.Migrations())
	if err != nil {
		if app.Env.Err() != nil {
			return nil // service.Main reports the configuration errors, each naming its variable
		}
		return err
	}
	rdb := app.Redis()
	// RabbitMQ carries the account emails to the notifier. auth keeps
	// serving without it (logins need no broker): a sign-up's email is then
	// lost and its owner asks for another (docs/auth.md).
	conn, err := app.BrokerOptional(ctx)
	if err != nil {
		if app.Env.Err() != nil {
			return nil // service.Main reports the configuration errors, each naming its variable
		}
		return err
	}
	if app.Env.Err() != nil {
		return nil // service.Main reports the configuration errors, each naming its variable
	}
	passwords, err := users.NewPasswords(cfg.BcryptCost)
	if err != nil {
		return err
	}
	userStore := users.NewStore(pool)
	clientStore := clients.NewStore(pool, app.Logger)
	km := keys.NewManager(pool, keys.Options{
		RotationInterval: cfg.KeyRotationInterval,
		Retain:           max(cfg.AccessTokenTTL, cfg.ServiceTokenTTL) + authn.DefaultLeeway + time.Minute,
		Logger:           app.Logger,
		KEK:              cfg.KEK,
	})
	verifier, err := authn.New(authn.Options{Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: km, DenyList: rdb, Logger: app.Logger})
	if err != nil {
		return err
	}
	web.Register(app.Server, web.Deps{
		Users:     userStore,
		Passwords: passwords,
		Keys:      km,
		Issuer:    tokens.NewIssuer(km, cfg.Issuer, cfg.Audience, nil),
		Refresh:   tokens.NewRefreshStore(rdb, cfg.RedisKeyPrefix, cfg.RefreshTokenTTL, cfg.SessionMaxAge),
		Clients:   clientStore,
		Limiter: ratelimit.New(rdb, cfg.RedisKeyPrefix, ratelimit.Options{MaxFailures: cfg.LoginMaxFailures,
			Window: cfg.LoginFailureWindow, Base: cfg.LoginBackoffBase, Max: cfg.LoginBackoffMax}),
		Verifier:      verifier,
		Verifications: verify.NewStore(pool, cfg.VerifyTTL, nil),
		Mail:          conn,
		SignupLimit:   limits.NewWindow(rdb, cfg.RedisKeyPrefix, "signup", cfg.SignupMaxPerClient, cfg.SignupWindow),
		NoticeLimit:   limits.NewWindow(rdb, cfg.RedisKeyPrefix, "signup-notice", 1, SignupNoticeInterval),
		ResendLimit:   limits.NewSpacing(rdb, cfg.RedisKeyPrefix, "verify-resend", cfg.VerifyResendInterval, cfg.VerifyResendPerDay),
		Redis:         rdb,
		Logger:        app.Logger,
		AccessTTL:     cfg.AccessTokenTTL,
		ServiceTTL:    cfg.ServiceTokenTTL,
	})

	st := &startup{cfg: cfg, schema: dbSchema, users: userStore, keys: km, clients: clientStore, passwords: passwords, logger: app.Logger}
	app.Server.AddCheck(httpapi.Check{Name: "setup", Ping: st.ready})
	first, cancel := context.WithTimeout(ctx, setupTimeout)
	err = st.run(first)
	cancel()
	if errors.Is(err, keys.ErrWrongKEK) {
		// Never make new keys in place of ones the KEK does not open: stop.
		return fmt.Errorf("signing keys: %w (is AUTH_KEK_FILE / AUTH_KEK the key they were sealed with?)", err)
	}
	if err != nil {
		app.Logger.Warn("auth setup failed; retrying in the background", "err", err.Error())
	}
	go func() {
		for err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(setupRetryDelay):
			}
			select { // the schema migrates in the background (pgdb.Schema); nothing to do before
			case <-ctx.Done():
				return
			case <-dbSchema.Ready():
			}
			if err = st.run(ctx); errors.Is(err, keys.ErrWrongKEK) {
				app.Logger.Error("the key-encryption key (AUTH_KEK_FILE / AUTH_KEK) does not open the signing keys; "+
					"auth stays not ready and makes no new key", "err", err.Error())
			} else if err != nil {
				app.Logger.Warn("auth setup failed; retrying", "err", err.Error())
			}
		}
		go clientStore.Run(ctx) // picks up the set another replica wrote
		km.Run(ctx)             // reloads and scheduled rotation
	}()
	app.Logger.Info("auth configured", "issuer", cfg.Issuer, "audience", cfg.Audience,
		"access_ttl", cfg.AccessTokenTTL.String(), "key_rotation", cfg.KeyRotationInterval.String(),
		"service_clients", cfg.Clients.Len(), "bcrypt_cost", cfg.BcryptCost, "kek", cfg.KEK.Fingerprint())
	return nil
}

// startup is auth's start-up work against the database, once its schema
// is migrated: write the configured service clients, load the signing keys
// (making the first), ensure the admin account.
type startup struct {
	cfg       Config
	schema    *pgdb.Schema
	users     *users.Store
	keys      *keys.Manager
	clients   *clients.Store
	passwords *users.Passwords
	logger    *slog.Logger
	done      atomic.Bool
}

func (s *startup) run(ctx context.Context) error {
	select {
	case <-s.schema.Ready():
	default:
		return errors.New("the database schema is not migrated yet")
	}
	res, err := s.clients.Sync(ctx, s.cfg.Clients)
	if err != nil {
		return err
	}
	s.logger.Info("service clients written to the database", "configured", s.cfg.Clients.Len(),
		"written", res.Written, "removed", res.Removed)
	if err := s.keys.Load(ctx); err != nil {
		return err
	}
	if s.cfg.AdminEmail != "" {
		hash, err := s.passwords.Hash(s.cfg.AdminPassword)
		if err != nil {
			return err
		}
		isAdminPassword := func(h []byte) bool { return s.passwords.Check(h, s.cfg.AdminPassword) }
		res, id, err := s.users.EnsureAdmin(ctx, s.cfg.AdminEmail, hash, isAdminPassword)
		if err != nil {
			return fmt.Errorf("admin bootstrap: %w", err)
		}
		switch res {
		case users.AdminRefused:
			// Someone may have registered the address before the operator
			// configured it: promoting that account would hand them the
			// platform. The service runs on without an admin from ADMIN_EMAIL.
			s.logger.Error("admin bootstrap refused: an account with ADMIN_EMAIL exists whose password is not ADMIN_PASSWORD; "+
				"it is NOT made admin (someone else may have registered the address first). "+
				"Remove or inspect that account, or use another ADMIN_EMAIL", "user_id", id)
		default:
			s.logger.Info("admin account ensured", "user_id", id, "created", res == users.AdminCreated, "promoted", res == users.AdminPromoted)
		}
	}
	s.done.Store(true)
	return nil
}

func (s *startup) ready(context.Context) error {
	if !s.done.Load() {
		return errors.New("start-up work (schema, service clients, signing keys, admin) not done yet")
	}
	return nil
}

// RotateKeys is the "auth rotate-keys" command: it makes a new current
// signing key in the database (DATABASE_URL; the schema is migrated first)
// and prints its id. Running replicas pick it up within
// keys.ReloadInterval and keep accepting tokens signed by the previous key
// until they expire. It returns the process exit code.
func RotateKeys(ctx context.Context, env func(string) string, out, errOut io.Writer) int {
	r := config.NewReader(env)
	cfg := ReadConfig(r)
	pcfg := pgdb.ReadConfig(r, pgdb.DefaultURL(DefaultDatabase))
	if err := r.Err(); err != nil {
		fmt.Fprintf(errOut, "auth rotate-keys: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	pool, err := openMigrated(ctx, pcfg)
	if err != nil {
		fmt.Fprintf(errOut, "auth rotate-keys: %v\n", err)
		return 1
	}
	defer pool.Close()
	km := keys.NewManager(pool, keys.Options{
		Retain: max(cfg.AccessTokenTTL, cfg.ServiceTokenTTL) + authn.DefaultLeeway + time.Minute,
		KEK:    cfg.KEK,
	})
	if err := km.Load(ctx); err != nil {
		fmt.Fprintf(errOut, "auth rotate-keys: %v\n", err)
		return 1
	}
	k, err := km.Rotate(ctx)
	if err != nil {
		fmt.Fprintf(errOut, "auth rotate-keys: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "current signing key: %s (seq %d, created %s)\n", k.ID, k.Seq, k.CreatedAt.Format(time.RFC3339))
	return 0
}

// openMigrated connects to the database of cfg and migrates its schema
// (safe while replicas run: pgdb.Migrate holds an advisory lock).
func openMigrated(ctx context.Context, cfg pgdb.Config) (*pgxpool.Pool, error) {
	pool, err := pgdb.Connect(cfg)
	if err != nil {
		return nil, err
	}
	if err := pgdb.Migrate(ctx, pool, schema.Migrations()); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
