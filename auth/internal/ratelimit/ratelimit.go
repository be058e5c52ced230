// Package ratelimit limits login attempts in Redis with an exponential
// back-off per key (an email and client IP pair, a client IP, a service
// client and client IP pair).
//
// An attempt is counted before it is evaluated (Reserve), atomically for
// all its keys in one script: concurrent guesses each take a number, and
// only those within the allowance go on to the password check; the others
// are refused without being counted. The first MaxFailures attempts of a
// key are free; the MaxFailures-th and every later one make the next
// attempt wait Base, then 2×Base, 4×Base… up to Max. A success forgets the
// pair's count (Reset) and gives the client IP its attempt back (Refund).
//
// Keys: <prefix>login:<kind>:<value>, a hash {n: attempts, until: unix ms
// before which the key is refused}, expiring Window after its last attempt
// (or its back-off, when longer).
//
// Nothing counts per email alone: whoever knows an address could otherwise
// lock its owner out. A guesser is slowed down per (email, IP) and per IP;
// the owner logging in from elsewhere is not.
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
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 15 * time.Minute
)

// Options configure a Limiter.
type Options struct {
	// MaxFailures is the number of attempts a key has before the back-off.
	MaxFailures int
	// Window is how long a key's attempts are remembered after its last one.
	Window time.Duration
	// Base is the first back-off, doubled at every further attempt.
	Base time.Duration
	// Max caps the back-off.
	Max time.Duration
}

// Limiter counts login attempts per key and backs off exponentially.
type Limiter struct {
	rdb    *redis.Client
	prefix string
	opts   Options
}

// New returns a Limiter with keys under prefix.
func New(rdb *redis.Client, prefix string, opts Options) *Limiter {
	if opts.MaxFailures < 1 {
		opts.MaxFailures = DefaultMaxFailures
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Base <= 0 {
		opts.Base = DefaultBackoffBase
	}
	if opts.Max < opts.Base {
		opts.Max = max(opts.Base, DefaultBackoffMax)
	}
	return &Limiter{rdb: rdb, prefix: prefix + "login:", opts: opts}
}

func hashed(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// PairKey is the key counting attempts at an email from a client IP
// (hashed: no address in Redis key names).
func PairKey(email, ip string) string { return "pair:" + hashed(email, ip) }

// IPKey is the key counting attempts from a client IP.
func IPKey(ip string) string { return "ip:" + ip }

// ClientKey is the key counting attempts at a service client id from a client IP.
func ClientKey(id, ip string) string { return "client:" + hashed(id, ip) }

// reserveScript counts one attempt for every key of KEYS, or none when one
// of them is backing off. ARGV: max, base ms, cap ms, window ms. Returns 0
// (counted) or the ms to wait. The clock is Redis's, shared by replicas.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max, base, cap, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local wait = 0
for _, k in ipairs(KEYS) do
  local u = tonumber(redis.call('HGET', k, 'until') or '0')
  if u - now > wait then wait = u - now end
end
if wait > 0 then return wait end
for _, k in ipairs(KEYS) do
  local n = redis.call('HINCRBY', k, 'n', 1)
  local ttl = window
  if n >= max then
    local d = cap
    if n - max < 40 then d = math.min(cap, base * 2 ^ (n - max)) end
    redis.call('HSET', k, 'until', now + d)
    ttl = d + window
  end
  redis.call('PEXPIRE', k, ttl)
end
return 0
`)

// Reserve counts one attempt for each of keys before it is evaluated. It
// returns 0 when the attempt may go on, or how long to wait when one of
// the keys is backing off (then nothing is counted).
func (l *Limiter) Reserve(ctx context.Context, keys ...string) (time.Duration, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = l.prefix + k
	}
	ms, err := reserveScript.Run(ctx, l.rdb, full, l.opts.MaxFailures, l.opts.Base.Milliseconds(),
		l.opts.Max.Milliseconds(), l.opts.Window.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit: count: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// refundScript takes back one attempt of each key of KEYS (a success), and
// its back-off when that brings it under ARGV[1].
var refundScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    local n = redis.call('HINCRBY', k, 'n', -1)
    if n < tonumber(ARGV[1]) then redis.call('HDEL', k, 'until') end
    if n <= 0 then redis.call('DEL', k) end
  end
end
return 0
`)

// Refund gives back the attempt Reserve counted for each of keys (the
// attempt succeeded).
func (l *Limiter) Refund(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = l.prefix + k
	}
	if err := refundScript.Run(ctx, l.rdb, full, l.opts.MaxFailures).Err(); err != nil {
		return fmt.Errorf("rate limit: refund: %w", err)
	}
	return nil
}

// Reset forgets the attempts of keys (after a successful login).
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
