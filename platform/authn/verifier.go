package authn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/platform/batch"
	"github.com/audiomill/audiomill/platform/errs"
)

// Defaults for Options.
const (
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
	DefaultLeeway = 5 * time.Second
	// MaxTokenBytes bounds the length of a token; longer ones are refused
	// before any parsing.
	MaxTokenBytes = 4096
	// DefaultCacheSize is how many verified tokens are remembered.
	DefaultCacheSize = 10000
	// DefaultCacheTTL is the longest a verified token is remembered; the
	// signature is checked again after it.
	DefaultCacheTTL = time.Minute
	// DefaultDenyTimeout bounds the deny-list lookup.
	DefaultDenyTimeout = 500 * time.Millisecond
)

// invalidToken is the message of every token failure: callers learn nothing
// about which check failed.
const invalidToken = "invalid or expired token"

// Options configure a Verifier.
type Options struct {
	// Issuer and Audience must match the token's iss and aud. Required.
	Issuer   string
	Audience string
	// Keys finds the public key named by the token's kid. Required.
	Keys KeySource
	// DenyList is the Redis holding DenyKey(jti); nil skips the check.
	DenyList *redis.Client
	// Logger receives the reasons of failures at debug level.
	Logger *slog.Logger
	// Leeway is the clock skew tolerated (DefaultLeeway when 0).
	Leeway time.Duration
	// CacheSize is how many verified tokens are remembered, so a token
	// presented again skips the signature check (DefaultCacheSize when 0,
	// no cache when negative). The deny list and exp are checked every time.
	CacheSize int
	// CacheTTL is the longest a token stays remembered (DefaultCacheTTL when 0).
	CacheTTL time.Duration
	// Now is the clock (time.Now when nil); for tests.
	Now func() time.Time
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer, audience string
	keys             KeySource
	deny             *batch.Loader[denyQuery, bool]
	logger           *slog.Logger
	parser           *jwt.Parser
	now              func() time.Time
	cache            *tokenCache
	cacheTTL         time.Duration
}

// New returns a Verifier for opts.
func New(opts Options) (*Verifier, error) {
	switch {
	case opts.Issuer == "":
		return nil, errors.New("authn: Issuer is required")
	case opts.Audience == "":
		return nil, errors.New("authn: Audience is required")
	case opts.Keys == nil:
		return nil, errors.New("authn: Keys is required")
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		issuer:   opts.Issuer,
		audience: opts.Audience,
		keys:     opts.Keys,
		logger:   cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		now:      now,
		cacheTTL: cmp.Or(opts.CacheTTL, DefaultCacheTTL),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Algorithm}),
			jwt.WithIssuer(opts.Issuer),
			jwt.WithAudience(opts.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cmp.Or(opts.Leeway, DefaultLeeway)),
			jwt.WithTimeFunc(now),
			jwt.WithStrictDecoding(),
		),
	}
	if opts.DenyList != nil {
		v.deny = newDenyList(opts.DenyList)
	}
	if opts.CacheSize >= 0 {
		v.cache = newTokenCache(cmp.Or(opts.CacheSize, DefaultCacheSize))
	}
	return v, nil
}

// Issuer returns the issuer the verifier requires.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience returns the audience the verifier requires.
func (v *Verifier) Audience() string { return v.audience }

// Verify checks raw (the compact JWT, without "Bearer ") and returns its
// principal. Every problem with the token is an errs.Unauthorized with a
// generic message; an unreachable deny list is errs.Unavailable.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	now := v.now()
	p, ok := v.cache.get(raw, now)
	if !ok {
		var err error
		p, err = v.parse(ctx, raw)
		if err != nil {
			return Principal{}, v.reject(ctx, err)
		}
		until := now.Add(v.cacheTTL)
		if p.ExpiresAt.Before(until) {
			until = p.ExpiresAt
		}
		v.cache.put(raw, p, until, now)
	}
	if err := v.checkDenied(ctx, p.TokenID, p.SessionID); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func (v *Verifier) parse(ctx context.Context, raw string) (p Principal, err error) {
	// The jwt package is well tested, but a panic on hostile input must not
	// become a 500 (a seed system's user service crashed on the token "111").
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic parsing token: %v", r)
		}
	}()
	if raw == "" {
		return Principal{}, errors.New("empty token")
	}
	if len(raw) > MaxTokenBytes {
		return Principal{}, fmt.Errorf("token of %d bytes exceeds %d", len(raw), MaxTokenBytes)
	}
	var claims Claims
	_, err = v.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token header has no kid")
		}
		return v.keys.PublicKey(ctx, kid)
	})
	if err != nil {
		return Principal{}, err
	}
	switch {
	case claims.Subject == "":
		return Principal{}, errors.New("token has no sub")
	case claims.ID == "":
		return Principal{}, errors.New("token has no jti")
	}
	return principalOf(&claims), nil
}

func (v *Verifier) checkDenied(ctx context.Context, jti, sid string) error {
	if v.deny == nil {
		return nil
	}
	denied, err := v.deny.Load(ctx, denyQuery{jti: jti, sid: sid})
	if err != nil {
		return errs.Wrap(fmt.Errorf("deny list lookup: %w", err), errs.Unavailable, "token revocation list unavailable")
	}
	if denied {
		return v.reject(ctx, fmt.Errorf("token %s (session %q) is revoked", jti, sid))
	}
	return nil
}

func (v *Verifier) reject(ctx context.Context, cause error) error {
	v.logger.DebugContext(ctx, "token rejected", "reason", cause.Error())
	return errs.Wrap(cause, errs.Unauthorized, invalidToken)
}

// tokenCache remembers verified tokens until they expire or their entry's
// deadline passes. Only tokens whose signature and claims were verified go
// in, keyed by the whole token, so an entry can only be hit by the exact
// bytes that were verified.
type tokenCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]cacheEntry
}

type cacheEntry struct {
	p     Principal
	until time.Time
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{max: size, entries: make(map[string]cacheEntry, size)}
}

func (c *tokenCache) get(raw string, now time.Time) (Principal, bool) {
	if c == nil {
		return Principal{}, false
	}
	c.mu.Lock()
	e, ok := c.entries[raw]
	if ok && !now.Before(e.until) {
		delete(c.entries, raw)
		ok = false
	}
	c.mu.Unlock()
	return e.p, ok
}

func (c *tokenCache) put(raw string, p Principal, until, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop expired entries; if that frees too little, drop an
		// arbitrary half (map order): a cache miss only costs a signature check.
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max/2 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[raw] = cacheEntry{p: p, until: until}
}
