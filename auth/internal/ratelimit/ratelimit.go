// Package ratelimit counts failed logins in Redis and blocks a key (an
// email, a client IP) after too many within a window.
//
// Keys: <prefix>login:<kind>:<value> holding the failure count, expiring
// Window after the first failure of the window.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults.
const (
	DefaultMaxFailures = 10
	DefaultWindow      = 15 * time.Minute
)

// Limiter blocks keys with MaxFailures failures within Window.
type Limiter struct {
	rdb    *redis.Client
	prefix string
	max    int64
	window time.Duration
}

// New returns a Limiter.
func New(rdb *redis.Client, prefix string, maxFailures int, window time.Duration) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix + "login:", max: int64(maxFailures), window: window}
}

// EmailKey is the key counting failures for an email (hashed: no address in Redis key names).
func EmailKey(email string) string {
	sum := sha256.Sum256([]byte(email))
	return "email:" + hex.EncodeToString(sum[:16])
}

// IPKey is the key counting failures from a client IP.
func IPKey(ip string) string { return "ip:" + ip }

// ClientKey is the key counting failures for a service client id.
func ClientKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "client:" + hex.EncodeToString(sum[:16])
}

// Blocked returns how long until the first blocked key of keys is free
// again, or 0 when none is blocked.
func (l *Limiter) Blocked(ctx context.Context, keys ...string) (time.Duration, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, l.prefix+k)
			ttls[i] = p.PTTL(ctx, l.prefix+k)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return 0, fmt.Errorf("rate limit: read: %w", err)
	}
	var wait time.Duration
	for i := range keys {
		n, err := cmds[i].Int64()
		if err != nil || n < l.max {
			continue
		}
		if ttl := ttls[i].Val(); ttl > wait {
			wait = ttl
		}
		wait = max(wait, time.Second)
	}
	return wait, nil
}

var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

// Fail counts one failure for each of keys.
func (l *Limiter) Fail(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := failScript.Run(ctx, l.rdb, []string{l.prefix + k}, l.window.Milliseconds()).Err(); err != nil {
			return fmt.Errorf("rate limit: count: %w", err)
		}
	}
	return nil
}

// Reset forgets the failures of keys (after a successful login).
func (l *Limiter) Reset(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = l.prefix + k
	}
	if err := l.rdb.Del(ctx, full...).Err(); err != nil {
		return fmt.Errorf("rate limit: reset: %w", err)
	}
	return nil
}
