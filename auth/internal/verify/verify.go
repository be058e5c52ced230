// Package verify keeps the email-verification links of auth's accounts in
// PostgreSQL (table email_verifications, migration 004): a link's secret
// token is stored only as its SHA-256, with an expiry; using the link
// deletes it and marks the account verified, in one transaction, so a link
// works once.
package verify

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/auth/internal/tokens"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// DefaultTTL is how long a verification link works (AUTH_VERIFY_TTL).
const DefaultTTL = 24 * time.Hour

// tokenBytes is the entropy of a link's token (base64url in the link).
const tokenBytes = 32

// MaxTokenLen bounds a token read from a request (43 characters are issued).
const MaxTokenLen = 128

// Store is the table of pending verification links.
type Store struct {
	pool *pgxpool.Pool
	ttl  time.Duration
	now  func() time.Time
}

// NewStore returns the store in pool's database (schema migrated); links
// work for ttl; now is the clock (time.Now when nil).
func NewStore(pool *pgxpool.Pool, ttl time.Duration, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, ttl: ttl, now: now}
}

func hashOf(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// Issue makes a new link for the account userID and returns its token and
// expiry. The account's earlier links stop working: only the newest is
// valid.
func (s *Store) Issue(ctx context.Context, userID string) (string, time.Time, error) {
	token := tokens.RandomID(tokenBytes)
	exp := s.now().Add(s.ttl).UTC().Truncate(time.Microsecond)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `delete from email_verifications where user_id = $1`, userID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `insert into email_verifications (token_hash, user_id, expires_at) values ($1, $2, $3)`,
			hashOf(token), userID, exp)
		return err
	})
	if err != nil {
		return "", time.Time{}, pgdb.Err(err, "verification link", "verify: issue")
	}
	return token, exp, nil
}

// Consume uses the link of token: it deletes it and marks its account
// verified, and returns the account's id. An unknown or already used token
// and an expired one are errs.Invalid, each with its message; either way
// the token no longer exists afterwards.
func (s *Store) Consume(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > MaxTokenLen {
		return "", errs.E(errs.Invalid, "the verification link is invalid or was already used")
	}
	var (
		userID  string
		expires time.Time
		expired bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `delete from email_verifications where token_hash = $1 returning user_id, expires_at`,
			hashOf(token)).Scan(&userID, &expires)
		if pgdb.IsNotFound(err) {
			return errs.E(errs.Invalid, "the verification link is invalid or was already used")
		}
		if err != nil {
			return err
		}
		if !s.now().Before(expires) {
			expired = true // the delete commits: an expired link is gone too
			return nil
		}
		_, err = tx.Exec(ctx, `update users set email_verified = true where id = $1`, userID)
		return err
	})
	if err == nil && expired {
		return "", errs.E(errs.Invalid, "the verification link has expired; log in and ask for a new one (POST /api/v1/users/verify/resend)")
	}
	if errs.IsCoded(err) {
		return "", err
	}
	if err != nil {
		return "", pgdb.Err(err, "verification link", "verify: consume")
	}
	return userID, nil
}
