// Package mongoconn builds the MongoDB client a service uses
// (mongo-driver/v2), with bounded timeouts, and the readiness check that pings
// it. Locally the server is FerretDB on SQLite; MONGO_URI may point at a real
// MongoDB or replica set instead.
package mongoconn

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/audiomill/audiomill/platform/config"
)

// Defaults for Config.
const (
	DefaultURI                    = "mongodb://127.0.0.1:27017/"
	DefaultConnectTimeout         = 2 * time.Second
	DefaultServerSelectionTimeout = 3 * time.Second
	DefaultTimeout                = 10 * time.Second
)

// Config is where the database is and how long to wait for it.
type Config struct {
	URI      string // MONGO_URI
	Database string // MONGO_DATABASE, defaulting to the service's own name
	// ConnectTimeout bounds dialing one server; ServerSelectionTimeout bounds
	// finding a usable server, so an operation fails fast (no hang) while the
	// database is down; Timeout bounds every operation that has no deadline.
	ConnectTimeout         time.Duration
	ServerSelectionTimeout time.Duration
	Timeout                time.Duration
}

// ReadConfig reads MONGO_URI and MONGO_DATABASE (default defaultDB).
func ReadConfig(r *config.Reader, defaultDB string) Config {
	cfg := Config{
		URI:                    r.String("MONGO_URI", DefaultURI),
		Database:               r.String("MONGO_DATABASE", defaultDB),
		ConnectTimeout:         DefaultConnectTimeout,
		ServerSelectionTimeout: DefaultServerSelectionTimeout,
		Timeout:                DefaultTimeout,
	}
	if _, err := connstring.ParseAndValidate(cfg.URI); err != nil {
		r.Fail("MONGO_URI", "is not a MongoDB connection string")
	}
	return cfg
}

// Connect returns a client for cfg. The driver connects in the background, so
// a service starts while the database is down and /readyz reports it.
func Connect(cfg Config) (*mongo.Client, error) {
	opts := options.Client().
		ApplyURI(cfg.URI).
		SetConnectTimeout(cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout)).
		SetServerSelectionTimeout(cmp.Or(cfg.ServerSelectionTimeout, DefaultServerSelectionTimeout)).
		SetTimeout(cmp.Or(cfg.Timeout, DefaultTimeout))
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb client: %w", err)
	}
	return client, nil
}

// Ping is the readiness check: nil when the primary answers.
func Ping(client *mongo.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := client.Ping(ctx, readpref.Primary()); err != nil {
			return fmt.Errorf("mongodb ping: %w", err)
		}
		return nil
	}
}

// EnsureIndexes creates models on coll, one createIndexes command per index:
// FerretDB 1.24 drops the connection (a panic on its side) when one command
// names several indexes that all exist already, which is every start but
// the first. Creating an existing index is a no-op.
func EnsureIndexes(ctx context.Context, coll *mongo.Collection, models ...mongo.IndexModel) error {
	for _, m := range models {
		if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("create index on %s: %w", coll.Name(), err)
		}
	}
	return nil
}
