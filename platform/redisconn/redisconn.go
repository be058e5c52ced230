// Package redisconn builds the Redis client a service uses (go-redis/v9),
// with bounded timeouts, and the readiness check that pings it.
package redisconn

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/platform/config"
)

// Defaults for Config.
const (
	DefaultAddr         = "127.0.0.1:6379"
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
)

// Config is where Redis is and how long to wait for it.
type Config struct {
	Addr         string // REDIS_ADDR
	Password     string // REDIS_PASSWORD
	DB           int    // REDIS_DB
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
}

// ReadConfig reads REDIS_ADDR, REDIS_PASSWORD and REDIS_DB.
func ReadConfig(r *config.Reader) Config {
	return Config{
		Addr:         r.String("REDIS_ADDR", DefaultAddr),
		Password:     r.String("REDIS_PASSWORD", ""),
		DB:           r.Int("REDIS_DB", 0),
		DialTimeout:  DefaultDialTimeout,
		ReadTimeout:  DefaultReadTimeout,
		WriteTimeout: DefaultWriteTimeout,
	}
}

// New returns a client for cfg. It does not dial: the pool connects on first
// use, so a service starts while Redis is down and /readyz reports it.
func New(cfg Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         cfg.Addr,
		Password:     cfg.Password,
		DB:           cfg.DB,
		DialTimeout:  cmp.Or(cfg.DialTimeout, DefaultDialTimeout),
		ReadTimeout:  cmp.Or(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout: cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout),
	})
}

// Ping is the readiness check: nil when Redis answers PING.
func Ping(client *redis.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis ping %s: %w", client.Options().Addr, err)
		}
		return nil
	}
}
