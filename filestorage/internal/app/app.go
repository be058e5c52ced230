// Package app wires filestorage: its configuration, the backend, token
// verification and the HTTP API, on a platform service.App.
package app

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/disk"
	"github.com/audiomill/audiomill/filestorage/internal/store/filecache"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/filestorage/internal/web"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/service"
)

// Name is the service's name in Consul.
const Name = "filestorage"

// DefaultPort is filestorage's port when PORT is unset.
const DefaultPort = 8102

// Spec returns filestorage's service.Spec.
func Spec(version string) service.Spec {
	return service.Spec{Name: Name, Version: version, DefaultPort: DefaultPort, Wire: Wire}
}

// idIndexRetry is how long after a failed build of GridFS's id index the
// service tries again.
const idIndexRetry = 30 * time.Second

// Defaults of the variables Config reads.
const (
	DefaultDatabase = "audiomill_files"
	DefaultBackend  = "gridfs"
	DefaultDiskDir  = "data/files"
	// DefaultCacheBytes bounds the local copies of recently written files.
	DefaultCacheBytes = 256 << 20
)

// Config is filestorage's own configuration.
type Config struct {
	Backend       string // FILESTORAGE_BACKEND: gridfs or disk
	DiskDir       string // FILESTORAGE_DIR: the disk backend's directory
	ChunkSize     int64  // FILESTORAGE_CHUNK_SIZE: GridFS chunk size of new files
	MaxObjectSize int64  // FILESTORAGE_MAX_OBJECT_SIZE
	Quota         int64  // FILESTORAGE_QUOTA: bytes per owner (0: none)
	// MaxBucketsPerOwner (FILESTORAGE_MAX_BUCKETS_PER_OWNER): how many
	// buckets one owner may store files in (0: no cap); storage:admin
	// tokens are exempt.
	MaxBucketsPerOwner int
	UploadTTL          time.Duration // FILESTORAGE_UPLOAD_TTL: life of an unfinished resumable upload
	SweepInterval      time.Duration // FILESTORAGE_SWEEP_INTERVAL: how often expired uploads are deleted
	// ReconcileEvery (FILESTORAGE_RECONCILE_EVERY): how often at most a path
	// GridFS's folder index does not hold has the files another GridFS
	// writer added indexed (0: never).
	ReconcileEvery time.Duration
	// CacheBytes (FILESTORAGE_CACHE_BYTES) bounds the local copies of the
	// files this instance wrote to GridFS, kept for the reads that follow
	// (0: none); CacheDir (FILESTORAGE_CACHE_DIR) is where they go, in a
	// directory of their own removed at stop.
	CacheBytes int64
	CacheDir   string
}

// ReadConfig reads filestorage's variables.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		Backend:            r.Enum("FILESTORAGE_BACKEND", DefaultBackend, "gridfs", "disk"),
		DiskDir:            r.String("FILESTORAGE_DIR", DefaultDiskDir),
		ChunkSize:          r.Int64("FILESTORAGE_CHUNK_SIZE", gridfs.DefaultChunkSize),
		MaxObjectSize:      r.Int64("FILESTORAGE_MAX_OBJECT_SIZE", web.DefaultMaxObjectSize),
		Quota:              r.Int64("FILESTORAGE_QUOTA", web.DefaultQuota),
		MaxBucketsPerOwner: r.Int("FILESTORAGE_MAX_BUCKETS_PER_OWNER", web.DefaultMaxBucketsPerOwner),
		UploadTTL:          r.Duration("FILESTORAGE_UPLOAD_TTL", web.DefaultUploadTTL),
		SweepInterval:      r.Duration("FILESTORAGE_SWEEP_INTERVAL", web.DefaultSweepInterval),
		ReconcileEvery:     r.Duration("FILESTORAGE_RECONCILE_EVERY", gridfs.DefaultReconcileEvery),
		CacheBytes:         r.Int64("FILESTORAGE_CACHE_BYTES", DefaultCacheBytes),
		CacheDir:           r.String("FILESTORAGE_CACHE_DIR", os.TempDir()),
	}
	if c.CacheBytes < 0 {
		r.Fail("FILESTORAGE_CACHE_BYTES", "must not be negative (0 means no cache)")
	}
	if st, err := os.Stat(c.CacheDir); c.CacheBytes > 0 && (err != nil || !st.IsDir()) {
		r.Fail("FILESTORAGE_CACHE_DIR", "%s is not a directory", c.CacheDir)
	}
	if c.ReconcileEvery < 0 {
		r.Fail("FILESTORAGE_RECONCILE_EVERY", "must not be negative (0 means never)")
	}
	// GridFS chunks live in 16 MiB BSON documents.
	if c.ChunkSize < 1024 || c.ChunkSize > 15<<20 {
		r.Fail("FILESTORAGE_CHUNK_SIZE", "must be between 1KiB and 15MiB")
	}
	if c.MaxObjectSize <= 0 {
		r.Fail("FILESTORAGE_MAX_OBJECT_SIZE", "must be positive")
	}
	if c.MaxBucketsPerOwner < 0 || c.MaxBucketsPerOwner > 1_000_000 {
		r.Fail("FILESTORAGE_MAX_BUCKETS_PER_OWNER", "must be between 0 (no cap) and 1000000")
	}
	if c.Quota < 0 {
		r.Fail("FILESTORAGE_QUOTA", "must not be negative (0 means no quota)")
	}
	if c.UploadTTL <= 0 || c.SweepInterval <= 0 {
		r.Fail("FILESTORAGE_UPLOAD_TTL", "and FILESTORAGE_SWEEP_INTERVAL must be positive")
	}
	return c
}

// Wire builds filestorage on app: the backend, token verification (auth's
// keys, the deny list in Redis), the API and the sweep of expired uploads.
func Wire(ctx context.Context, app *service.App) error {
	cfg := ReadConfig(app.Env)
	authCfg := authn.ReadConfig(app.Env)
	if err := app.Env.Err(); err != nil {
		return err
	}
	backend, err := openBackend(ctx, app, cfg)
	if err != nil {
		return err
	}
	verifier, err := app.Verifier(ctx, authCfg)
	if err != nil {
		return err
	}
	api := web.Register(app.Server.Router(), app.Server, web.Options{
		Backend: backend,
		Limits:  web.Limits{MaxObjectSize: cfg.MaxObjectSize, Quota: cfg.Quota, MaxBucketsPerOwner: cfg.MaxBucketsPerOwner},
		Logger:  app.Logger,
		Authenticate: func(h http.Handler) http.Handler {
			return authn.Middleware(verifier)(h)
		},
	})
	go api.Sweep(ctx, cfg.SweepInterval)
	return nil
}

func openBackend(ctx context.Context, app *service.App, cfg Config) (store.Backend, error) {
	if cfg.Backend == "disk" {
		b, err := disk.New(cfg.DiskDir, disk.Options{UploadTTL: cfg.UploadTTL})
		if err != nil {
			return nil, err
		}
		app.OnClose("disk", func(context.Context) error { return b.Close() })
		return b, nil
	}
	db, err := app.Mongo(DefaultDatabase)
	if err != nil {
		return nil, err
	}
	reconcile := cfg.ReconcileEvery
	if reconcile == 0 {
		reconcile = -1 // never
	}
	var cache *filecache.Cache
	if cfg.CacheBytes > 0 {
		if cache, err = filecache.New(cfg.CacheDir, cfg.CacheBytes); err != nil {
			return nil, err
		}
		app.OnClose("file cache", func(context.Context) error { return cache.Close() })
	}
	b := gridfs.New(db, gridfs.Options{ChunkSize: int32(cfg.ChunkSize), UploadTTL: cfg.UploadTTL, ReconcileEvery: reconcile, Cache: cache})
	// The database may be down at start: the service still starts (and
	// /readyz says not ready); every bucket gets its indexes on first use.
	initCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.EnsureIndexes(initCtx); err != nil {
		app.Logger.Warn("gridfs indexes not created at start; buckets get them on first use", "err", err.Error())
	}
	// The id index of the files written before it existed reads every
	// bucket once: in the background, retried until done (a lookup by id
	// builds it meanwhile if it must).
	app.Go(ctx, "gridfs id index", func(ctx context.Context) {
		for {
			err := b.EnsureIDIndex(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			app.Logger.Warn("gridfs id index not built yet; retrying", "err", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(idIndexRetry):
			}
		}
	})
	return b, nil
}
