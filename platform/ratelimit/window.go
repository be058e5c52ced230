package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Window counts events per key in fixed windows: at most Max per Window
// (sign-ups per client address). Keys: <prefix><name>:<key>.
type Window struct {
	rdb    *redis.Client
	prefix string
	max    int64
	window time.Duration
}

// NewWindow returns a Window allowing maxEvents per window for each key,
// its Redis keys under prefix+name+":".
func NewWindow(rdb *redis.Client, prefix, name string, maxEvents int, window time.Duration) *Window {
	return &Window{rdb: rdb, prefix: prefix + name + ":", max: int64(maxEvents), window: window}
}

var windowScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end
return 0
`)

// Take counts one event for key. It returns 0 when the event is allowed,
// otherwise how long until the key's window ends.
func (w *Window) Take(ctx context.Context, key string) (time.Duration, error) {
	ms, err := windowScript.Run(ctx, w.rdb, []string{w.prefix + key}, w.window.Milliseconds(), w.max).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", w.prefix, err)
	}
	if ms == 0 {
		return 0, nil
	}
	return max(time.Duration(ms)*time.Millisecond, time.Second), nil
}

// Spacing allows an event per key at most once per Interval and at most
// PerDay within 24 hours (verification emails an account asks for). Keys:
// <prefix><name>:last:<key> and <prefix><name>:day:<key>.
type Spacing struct {
	rdb      *redis.Client
	prefix   string
	interval time.Duration
	perDay   int64
}

// NewSpacing returns a Spacing, its Redis keys under prefix+name+":".
func NewSpacing(rdb *redis.Client, prefix, name string, interval time.Duration, perDay int) *Spacing {
	return &Spacing{rdb: rdb, prefix: prefix + name + ":", interval: interval, perDay: int64(perDay)}
}

var spacingScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('PTTL', KEYS[1]) end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n >= tonumber(ARGV[3]) then return redis.call('PTTL', KEYS[2]) end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
n = redis.call('INCR', KEYS[2])
if n == 1 or redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 0
`)

// Take counts one event for key when allowed and returns 0; otherwise it
// counts nothing and returns how long until the next one is allowed.
func (s *Spacing) Take(ctx context.Context, key string) (time.Duration, error) {
	ms, err := spacingScript.Run(ctx, s.rdb, []string{s.prefix + "last:" + key, s.prefix + "day:" + key},
		s.interval.Milliseconds(), (24 * time.Hour).Milliseconds(), s.perDay).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", s.prefix, err)
	}
	if ms == 0 {
		return 0, nil
	}
	return max(time.Duration(ms)*time.Millisecond, time.Second), nil
}
