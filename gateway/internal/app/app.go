// Package app wires the gateway on a platform service.App: its
// configuration, the jobs store (PostgreSQL, migrated at start), token
// verification (Redis holds the deny list), filestorage (with the gateway's
// service token), the event pipeline and the HTTP API.
package app

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/jobfeed"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/links"
	"github.com/audiomill/audiomill/gateway/internal/mongomigrate"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/gateway/internal/resumable"
	"github.com/audiomill/audiomill/gateway/internal/session"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/gateway/internal/uploads"
	"github.com/audiomill/audiomill/gateway/internal/web"
	"github.com/audiomill/audiomill/gateway/internal/webapp"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/ratelimit"
	"github.com/audiomill/audiomill/platform/service"
)

// Name is the service's name in Consul.
const Name = "gateway"

// Defaults of the variables ReadConfig reads.
const (
	DefaultPort     = 8103
	DefaultDatabase = "audiomill_gateway"
	DefaultClientID = "gateway"
	// DefaultUploadsPerMinute: a person uploads a few videos a minute at
	// most; a script looping on uploads is stopped at one a second.
	DefaultUploadsPerMinute = 60
	// uploadLimitPrefix names the Redis keys of the upload limit.
	uploadLimitPrefix = "gateway:uploads:"
)

// Config is the gateway's own configuration.
type Config struct {
	MaxUpload   int64         // GATEWAY_MAX_UPLOAD: largest video
	Filestorage client.Config // FILESTORAGE_URL, FILESTORAGE_SERVICE: where filestorage is
	// Account is the gateway's service account (SERVICE_CLIENT_ID, default
	// DefaultClientID; SERVICE_CLIENT_SECRET, without which uploads,
	// downloads and deletes answer 503) and where auth is (AUTH_URL instead
	// of Consul's AUTH_SERVICE).
	Account       authn.ServiceAccount
	StatusQueue   string        // GATEWAY_STATUS_QUEUE
	RelayInterval time.Duration // GATEWAY_RELAY_INTERVAL
	RelayAfter    time.Duration // GATEWAY_RELAY_AFTER
	// UploadsPerMinute (GATEWAY_UPLOADS_PER_MINUTE) bounds each user's
	// uploads a minute; 0 turns the bound off.
	UploadsPerMinute int
	// IdempotencyTTL (GATEWAY_IDEMPOTENCY_TTL) is how long an upload's
	// Idempotency-Key answers with its job.
	IdempotencyTTL time.Duration
	// Live job events (GET /api/v1/jobs/events): how long changes are kept
	// for a resuming stream (GATEWAY_JOB_EVENTS_RETENTION), the streams
	// allowed per user and per replica (GATEWAY_JOB_EVENTS_STREAMS_PER_USER,
	// GATEWAY_JOB_EVENTS_STREAMS) and the keep-alive (GATEWAY_JOB_EVENTS_PING).
	EventsRetention     time.Duration
	EventStreamsPerUser int
	EventStreams        int
	EventsPing          time.Duration
	// LinkKey (GATEWAY_LINK_KEY_FILE or GATEWAY_LINK_KEY) signs the MP3
	// links of the web page; every replica needs the same. Without it links
	// answer 503.
	LinkKey []byte
	// LinkTTL (GATEWAY_LINK_TTL) is how long a signed link works.
	LinkTTL time.Duration
	// SessionMaxAge (GATEWAY_SESSION_MAX_AGE) is the refresh cookie's Max-Age.
	SessionMaxAge time.Duration
	// CSPReportsPerMinute (GATEWAY_CSP_REPORTS_PER_MINUTE) bounds the CSP
	// violation reports one replica logs a minute.
	CSPReportsPerMinute int
}

// ReadConfig reads the gateway's variables.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		MaxUpload:        r.Int64("GATEWAY_MAX_UPLOAD", web.DefaultMaxUpload),
		Filestorage:      client.ConfigFromEnv(r),
		Account:          authn.ReadServiceAccount(r, DefaultClientID),
		StatusQueue:      r.String("GATEWAY_STATUS_QUEUE", pipeline.DefaultStatusQueue),
		RelayInterval:    r.Duration("GATEWAY_RELAY_INTERVAL", pipeline.DefaultRelayInterval),
		RelayAfter:       r.Duration("GATEWAY_RELAY_AFTER", pipeline.DefaultRelayAfter),
		UploadsPerMinute: r.Int("GATEWAY_UPLOADS_PER_MINUTE", DefaultUploadsPerMinute),
		IdempotencyTTL:   r.Duration("GATEWAY_IDEMPOTENCY_TTL", uploads.DefaultKeyTTL),

		EventsRetention:     r.Duration("GATEWAY_JOB_EVENTS_RETENTION", pipeline.DefaultChangeRetention),
		EventStreamsPerUser: r.Int("GATEWAY_JOB_EVENTS_STREAMS_PER_USER", jobfeed.DefaultPerUser),
		EventStreams:        r.Int("GATEWAY_JOB_EVENTS_STREAMS", jobfeed.DefaultTotal),
		EventsPing:          r.Duration("GATEWAY_JOB_EVENTS_PING", web.DefaultPingInterval),

		LinkKey:       readLinkKey(r),
		LinkTTL:       r.Duration("GATEWAY_LINK_TTL", links.DefaultTTL),
		SessionMaxAge: r.Duration("GATEWAY_SESSION_MAX_AGE", session.DefaultMaxAge),

		CSPReportsPerMinute: r.Int("GATEWAY_CSP_REPORTS_PER_MINUTE", webapp.DefaultReportsPerMinute),
	}
	if c.EventsRetention <= 0 || c.EventsPing <= 0 {
		r.Fail("GATEWAY_JOB_EVENTS_RETENTION", "and GATEWAY_JOB_EVENTS_PING must be positive")
	}
	if c.EventStreamsPerUser <= 0 || c.EventStreams <= 0 {
		r.Fail("GATEWAY_JOB_EVENTS_STREAMS_PER_USER", "and GATEWAY_JOB_EVENTS_STREAMS must be positive")
	}
	if c.LinkTTL <= 0 || c.LinkTTL > 24*time.Hour {
		r.Fail("GATEWAY_LINK_TTL", "must be positive and at most 24h")
	}
	if c.SessionMaxAge <= 0 {
		r.Fail("GATEWAY_SESSION_MAX_AGE", "must be positive")
	}
	if c.CSPReportsPerMinute <= 0 {
		r.Fail("GATEWAY_CSP_REPORTS_PER_MINUTE", "must be positive")
	}
	if c.IdempotencyTTL <= 0 {
		r.Fail("GATEWAY_IDEMPOTENCY_TTL", "must be positive")
	}
	if c.UploadsPerMinute < 0 {
		r.Fail("GATEWAY_UPLOADS_PER_MINUTE", "must be 0 (no limit) or more")
	}
	if c.MaxUpload <= 0 {
		r.Fail("GATEWAY_MAX_UPLOAD", "must be positive")
	}
	if c.RelayInterval <= 0 || c.RelayAfter <= 0 {
		r.Fail("GATEWAY_RELAY_INTERVAL", "and GATEWAY_RELAY_AFTER must be positive")
	}
	return c
}

// readLinkKey reads the link key from the file GATEWAY_LINK_KEY_FILE or
// the variable GATEWAY_LINK_KEY (not both; neither: no links), at least
// links.MinKeyLen characters (make up writes 48 hex characters).
func readLinkKey(r *config.Reader) []byte {
	path, inline := r.String("GATEWAY_LINK_KEY_FILE", ""), r.String("GATEWAY_LINK_KEY", "")
	name, key := "GATEWAY_LINK_KEY", inline
	switch {
	case path != "" && inline != "":
		r.Fail("GATEWAY_LINK_KEY_FILE", "set GATEWAY_LINK_KEY_FILE or GATEWAY_LINK_KEY, not both")
		return nil
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			r.Fail("GATEWAY_LINK_KEY_FILE", "%v", err)
			return nil
		}
		name, key = "GATEWAY_LINK_KEY_FILE", strings.TrimSpace(string(b))
	}
	if key == "" {
		return nil
	}
	if len(key) < links.MinKeyLen {
		r.Fail(name, "the link key must be at least %d characters (e.g. `openssl rand -hex 24`)", links.MinKeyLen)
		return nil
	}
	return []byte(key)
}

// Spec is the gateway's service.Spec, with its command migrate-from-mongo.
func Spec(version string) service.Spec {
	return service.Spec{Name: Name, Version: version, DefaultPort: DefaultPort, Wire: Wire,
		Commands: []service.Command{{Name: "migrate-from-mongo", Run: mongomigrate.Run}}}
}

// Wire builds the gateway on app.
func Wire(ctx context.Context, app *service.App) error {
	cfg := ReadConfig(app.Env)
	authCfg := authn.ReadConfig(app.Env)
	if err := app.Env.Err(); err != nil {
		return err
	}
	// The jobs' database: DATABASE_URL, migrated at start (and in the
	// background while it is away; /readyz says "schema" until then).
	pool, schema, err := app.Postgres(ctx, DefaultDatabase, jobs.Migrations())
	if err != nil {
		return err
	}
	// Redis holds the token deny list, which app.Verifier uses, and the
	// users' upload counts.
	uploadLimit := ratelimit.New(app.Redis(), uploadLimitPrefix, cfg.UploadsPerMinute, time.Minute)
	// Uploads go on while RabbitMQ is away: the relay publishes them later.
	conn, err := app.BrokerOptional(ctx)
	if err != nil {
		return err
	}
	store := jobs.NewStore(pool)

	verifier, err := app.Verifier(ctx, authCfg)
	if err != nil {
		return err
	}

	var files *storage.Storage
	if !cfg.Account.Configured() {
		app.Logger.Warn("SERVICE_CLIENT_SECRET is not set: uploads, downloads and deletes answer 503")
	} else {
		account := cfg.Account
		account.Scope = storage.Scope()
		tokens, err := account.TokenSource(app.Resolver())
		if err != nil {
			return err
		}
		fc, err := cfg.Filestorage.New(app.Resolver().Picker(cfg.Filestorage.Service), tokens)
		if err != nil {
			return err
		}
		files = storage.New(fc)
	}

	popts := pipeline.Options{Jobs: store, Conn: conn, Logger: app.Logger, Ready: schema.Ready(),
		StatusQueue: cfg.StatusQueue, RelayInterval: cfg.RelayInterval, RelayAfter: cfg.RelayAfter,
		ChangeRetention: cfg.EventsRetention, Registerer: app.Server.Registry()}
	if files != nil {
		popts.Files = files // a nil *Storage must not become a non-nil Files
	}
	pipe := pipeline.New(popts)
	var accept *uploads.Service
	var resume *resumable.Service
	if files != nil {
		accept = uploads.New(uploads.Options{Storage: files, Pipeline: pipe, Jobs: store,
			KeyTTL: cfg.IdempotencyTTL, Logger: app.Logger})
		resume = resumable.New(resumable.Options{Store: resumable.NewStore(pool), Storage: files, Pipeline: pipe,
			MaxSize: cfg.MaxUpload, Logger: app.Logger})
		go resume.Sweep(ctx, resumable.DefaultSweepInterval)
	}
	go pipe.Relay(ctx)
	go func() {
		if err := pipe.Consume(ctx); err != nil {
			app.Logger.Error("job status consumer stopped", "err", err.Error())
		}
	}()

	// Live job events: one LISTEN connection wakes this replica's streams;
	// they end when the server starts draining.
	feed := jobfeed.New(jobfeed.Options{ConnConfig: pool.Config().ConnConfig, PerUser: cfg.EventStreamsPerUser,
		Total: cfg.EventStreams, Logger: app.Logger, Registerer: app.Server.Registry()})
	app.Go(ctx, "job events listener", feed.Run)
	app.Server.OnShutdown(feed.Close)

	var signer *links.Signer
	if cfg.LinkKey == nil {
		app.Logger.Warn("GATEWAY_LINK_KEY_FILE is not set: the web page's MP3 links answer 503")
	} else if signer, err = links.New(cfg.LinkKey, cfg.LinkTTL); err != nil {
		return err
	}
	authBase := app.Resolver().BaseURL(cfg.Account.AuthURL, authCfg.Service)
	web.Register(app.Server.Router(), app.Server, web.Options{
		Jobs: store, Storage: files, Uploads: accept, Resumable: resume, Authenticate: authn.Middleware(verifier),
		Auth: authBase, MaxUpload: cfg.MaxUpload,
		UploadLimit: uploadLimit, Feed: feed, PingInterval: cfg.EventsPing, Links: signer,
		Logger: app.Logger, Registerer: app.Server.Registry(),
	})
	session.Register(app.Server.Router(), app.Server, session.Options{Auth: authBase, MaxAge: cfg.SessionMaxAge, Logger: app.Logger})
	site, err := webapp.New(webapp.Options{Logger: app.Logger, Registerer: app.Server.Registry(), ReportsPerMinute: cfg.CSPReportsPerMinute})
	if err != nil {
		return err
	}
	site.Register(app.Server.Router(), app.Server)
	return nil
}
