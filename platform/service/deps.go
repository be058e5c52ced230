package service

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/redisconn"
)

// Mongo connects to the MongoDB-compatible database (MONGO_URI,
// MONGO_DATABASE defaulting to defaultDB), adds it to /readyz as "mongodb"
// and closes it at shutdown.
func (a *App) Mongo(defaultDB string) (*mongo.Database, error) {
	cfg := mongoconn.FromEnv(a.Env, defaultDB)
	client, err := mongoconn.Connect(cfg)
	if err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	a.Server.AddCheck(httpapi.Check{Name: "mongodb", Ping: mongoconn.Ping(client)})
	a.OnClose("mongodb", client.Disconnect)
	return client.Database(cfg.Database), nil
}

// Redis builds the Redis client (REDIS_ADDR, REDIS_PASSWORD, REDIS_DB), adds
// it to /readyz as "redis" and closes it at shutdown.
func (a *App) Redis() *redis.Client {
	client := redisconn.New(redisconn.FromEnv(a.Env))
	a.Server.AddCheck(httpapi.Check{Name: "redis", Ping: redisconn.Ping(client)})
	a.OnClose("redis", func(context.Context) error { return client.Close() })
	return client
}
