package service

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/pgdb"
	"github.com/audiomill/audiomill/platform/redisconn"
)

// Mongo connects to the MongoDB-compatible database (MONGO_URI,
// MONGO_DATABASE defaulting to defaultDB), adds it to /readyz as "mongodb"
// and closes it at shutdown.
func (a *App) Mongo(defaultDB string) (*mongo.Database, error) {
	cfg := mongoconn.ReadConfig(a.Env, defaultDB)
	client, err := mongoconn.Connect(cfg)
	if err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	a.Server.AddCheck(httpapi.Check{Name: "mongodb", Ping: mongoconn.Ping(client)})
	a.OnClose("mongodb", client.Disconnect)
	return client.Database(cfg.Database), nil
}

// Redis builds the Redis client (REDIS_ADDR, REDIS_PASSWORD, REDIS_DB), adds
// it to /readyz as "redis" and closes it at shutdown. Later calls return the
// same client.
func (a *App) Redis() *redis.Client {
	if a.redis != nil {
		return a.redis
	}
	client := redisconn.New(redisconn.ReadConfig(a.Env))
	a.Server.AddCheck(httpapi.Check{Name: "redis", Ping: redisconn.Ping(client)})
	a.OnClose("redis", func(context.Context) error { return client.Close() })
	a.redis = client
	return client
}

// Postgres connects to the service's PostgreSQL database (DATABASE_URL,
// defaulting to pgdb.DefaultURL(database)), adds it to /readyz as
// "postgres", migrates its schema from migrations (tern files; the first
// attempt runs here, bounded, later ones in the background while the
// database is away) with the readiness check "schema", and closes the pool
// at shutdown. Callers that must wait for the schema (background workers)
// wait on the returned Schema's Ready.
func (a *App) Postgres(ctx context.Context, database string, migrations fs.FS) (*pgxpool.Pool, *pgdb.Schema, error) {
	cfg := pgdb.ReadConfig(a.Env, pgdb.DefaultURL(database))
	if a.Env.Err() != nil {
		return nil, nil, a.Env.Err()
	}
	pool, err := pgdb.Connect(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	a.Server.AddCheck(httpapi.Check{Name: "postgres", Ping: pgdb.Ping(pool)})
	a.OnClose("postgres", func(context.Context) error { pool.Close(); return nil })
	schema := pgdb.NewSchema(pool, migrations, a.Logger)
	a.Server.AddCheck(httpapi.Check{Name: "schema", Ping: schema.Check})
	first, cancel := context.WithTimeout(ctx, firstMigrateTimeout)
	err = schema.TryOnce(first)
	cancel()
	if err != nil {
		go schema.Run(ctx)
	}
	return pool, schema, nil
}

// firstMigrateTimeout bounds the migration attempt made during start-up;
// when the database is not there yet, start-up goes on and the schema
// migrates in the background.
const firstMigrateTimeout = 5 * time.Second
