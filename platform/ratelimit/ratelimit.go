// Package ratelimit bounds how often one key (a user, a client address, an
// account) may do something, counted in Redis so every replica shares the
// count: Limiter allows at most Limit distinct events in a fixed window,
// Window at most Max events in a fixed window, and Spacing one event per
// interval and so many a day.
//
// A Limiter's event has an id, and an id already counted in the window is allowed
// again without counting: a retried upload (its Idempotency-Key) or a
// redelivered message (its job) uses the limit once. The window starts at
// the key's first event and ends Window later; the set of ids it holds is
// at most Limit long, so a key costs bounded memory however hard it is hit.
package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter allows each key Limit distinct events per Window.
type Limiter struct {
	rdb    *redis.Client
	prefix string
	limit  int
	window time.Duration
}

// New returns a Limiter whose keys are prefix+key in rdb. A limit below 1
// allows everything (the limit is off).
func New(rdb *redis.Client, prefix string, limit int, window time.Duration) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix, limit: limit, window: window}
}

// take: KEYS[1] the window's set; ARGV the id, the limit, the window in ms.
// Returns -1 when allowed, else the milliseconds until the window ends.
var take = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  return ttl
end
redis.call('SADD', KEYS[1], ARGV[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return -1
`)

// Take counts event id against key. It returns 0 when the event is allowed
// (counted now, or already counted in this window), else how long until
// the window ends. A Redis failure is returned as an error; the caller
// decides whether to fail open.
func (l *Limiter) Take(ctx context.Context, key, id string) (time.Duration, error) {
	if l == nil || l.limit < 1 {
		return 0, nil
	}
	ms, err := take.Run(ctx, l.rdb, []string{l.prefix + key}, id, l.limit, l.window.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", key, err)
	}
	if ms < 0 {
		return 0, nil
	}
	return max(time.Duration(ms)*time.Millisecond, time.Millisecond), nil
}

// Limit is the number of events a key may have per window (below 1: no limit).
func (l *Limiter) Limit() int { return l.limit }
