package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/platform/errs"
)

// Refresh tokens: 32 random bytes (base64url) handed to the client once.
// Redis holds only their SHA-256:
//
//	<prefix>refresh:<sha256 hex>     hash {fam, sub, used, exp}  TTL = refresh lifetime
//	<prefix>family:<fam>:revoked     "1"                         TTL = refresh lifetime
//	<prefix>sessions:<sub>           sorted set fam → exp        TTL = max age
//
// Rotating a token marks it used and issues the next one in the same
// family. Presenting a used token again means it was stolen (or replayed):
// the whole family is revoked, so neither the thief nor the user can
// refresh any more, and the user must log in again.
//
// A family (a session: its id is the sid claim of its access tokens) ends
// at exp, maxAge after the login that started it, however often it is
// refreshed. The sessions of a subject are indexed by their end, so "log
// out everywhere" finds the live ones; ended ones are pruned as new ones
// start.
type RefreshStore struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
	maxAge time.Duration
	now    func() time.Time
}

// NewRefreshStore returns a store of refresh tokens living ttl, in
// families living maxAge at most, under the Redis key prefix.
func NewRefreshStore(rdb *redis.Client, prefix string, ttl, maxAge time.Duration) *RefreshStore {
	return &RefreshStore{rdb: rdb, prefix: prefix, ttl: ttl, maxAge: maxAge, now: time.Now}
}

// ErrSessionExpired is the cause of the error of Rotate for a family past
// its maximum age.
var ErrSessionExpired = errors.New("refresh family past its maximum age")

// TTL returns the lifetime of a refresh token.
func (s *RefreshStore) TTL() time.Duration { return s.ttl }

func (s *RefreshStore) tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return s.prefix + "refresh:" + hex.EncodeToString(sum[:])
}

func (s *RefreshStore) sessionsKey(subject string) string {
	return s.prefix + "sessions:" + subject
}

func (s *RefreshStore) revokedKey(family string) string {
	return s.prefix + "family:" + family + ":revoked"
}

// Issue starts a new family for subject and returns its first token and the family id.
func (s *RefreshStore) Issue(ctx context.Context, subject string) (token, family string, err error) {
	family = RandomID(16)
	token = RandomID(32)
	key := s.tokenKey(token)
	now := s.now()
	exp := now.Add(s.maxAge).UnixMilli()
	sessions := s.sessionsKey(subject)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "fam", family, "sub", subject, "used", "0", "exp", exp)
		p.PExpire(ctx, key, s.ttl)
		p.ZRemRangeByScore(ctx, sessions, "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		p.ZAdd(ctx, sessions, redis.Z{Score: float64(exp), Member: family})
		p.PExpire(ctx, sessions, s.maxAge)
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("refresh token: store: %w", err)
	}
	return token, family, nil
}

// Sessions returns the families of subject that have not reached their
// maximum age (revoked ones included).
func (s *RefreshStore) Sessions(ctx context.Context, subject string) ([]string, error) {
	fams, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.sessionsKey(subject), ByScore: true,
		Start: "(" + strconv.FormatInt(s.now().UnixMilli(), 10), Stop: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("refresh token: read sessions: %w", err)
	}
	return fams, nil
}

// rotateScript atomically checks and rotates one token.
// KEYS: old token, new token, family revoked marker. ARGV: family, ttl ms,
// now ms, max age ms. Returns 0 unknown, 1 family revoked, 2 reuse
// detected (family now revoked), 3 rotated, 4 family past its max age.
// A token from before families had an end gets one, max age from now.
var rotateScript = redis.NewScript(`
local fam = redis.call('HGET', KEYS[1], 'fam')
if not fam or fam ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
if redis.call('HGET', KEYS[1], 'used') == '1' then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
  return 2
end
local exp = redis.call('HGET', KEYS[1], 'exp')
if not exp then exp = tostring(tonumber(ARGV[3]) + tonumber(ARGV[4])) end
if tonumber(ARGV[3]) >= tonumber(exp) then return 4 end
redis.call('HSET', KEYS[1], 'used', '1')
local sub = redis.call('HGET', KEYS[1], 'sub')
redis.call('HSET', KEYS[2], 'fam', fam, 'sub', sub, 'used', '0', 'exp', exp)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 3
`)

// Rotate exchanges token for the next one of its family and returns it with
// the subject and family. An unknown, expired, revoked or reused token is
// errs.Unauthorized; reuse also revokes the family. A family past its
// maximum age is errs.Unauthorized wrapping ErrSessionExpired.
func (s *RefreshStore) Rotate(ctx context.Context, token string) (next, subject, family string, err error) {
	if token == "" || len(token) > 256 {
		return "", "", "", errs.E(errs.Unauthorized, "invalid refresh token")
	}
	old := s.tokenKey(token)
	rec, err := s.rdb.HGetAll(ctx, old).Result()
	if err != nil {
		return "", "", "", fmt.Errorf("refresh token: read: %w", err)
	}
	family, subject = rec["fam"], rec["sub"]
	if family == "" {
		return "", "", "", errs.E(errs.Unauthorized, "invalid refresh token")
	}
	next = RandomID(32)
	res, err := rotateScript.Run(ctx, s.rdb, []string{old, s.tokenKey(next), s.revokedKey(family)},
		family, s.ttl.Milliseconds(), s.now().UnixMilli(), s.maxAge.Milliseconds()).Int()
	if err != nil {
		return "", "", "", fmt.Errorf("refresh token: rotate: %w", err)
	}
	switch res {
	case 3:
		return next, subject, family, nil
	case 2:
		return "", "", "", errs.Wrap(errors.New("refresh token reused; family revoked"), errs.Unauthorized, "invalid refresh token")
	case 1:
		return "", "", "", errs.Wrap(errors.New("refresh family revoked"), errs.Unauthorized, "invalid refresh token")
	case 4:
		return "", "", "", errs.Wrap(ErrSessionExpired, errs.Unauthorized,
			"the session has reached its maximum age; log in again")
	default:
		return "", "", "", errs.E(errs.Unauthorized, "invalid refresh token")
	}
}

// Owner returns the family and subject of token, or "" when it is unknown.
func (s *RefreshStore) Owner(ctx context.Context, token string) (family, subject string, err error) {
	if token == "" || len(token) > 256 {
		return "", "", nil
	}
	vals, err := s.rdb.HMGet(ctx, s.tokenKey(token), "fam", "sub").Result()
	if err != nil {
		return "", "", fmt.Errorf("refresh token: read: %w", err)
	}
	family, _ = vals[0].(string)
	subject, _ = vals[1].(string)
	return family, subject, nil
}

// RevokeFamily revokes every refresh token of family.
func (s *RefreshStore) RevokeFamily(ctx context.Context, family string) error {
	if family == "" {
		return nil
	}
	if err := s.rdb.Set(ctx, s.revokedKey(family), "1", s.ttl).Err(); err != nil {
		return fmt.Errorf("refresh token: revoke family: %w", err)
	}
	return nil
}

// FamilyRevoked reports whether family is revoked.
func (s *RefreshStore) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.revokedKey(family)).Result()
	if err != nil {
		return false, fmt.Errorf("refresh token: read family: %w", err)
	}
	return n > 0, nil
}
