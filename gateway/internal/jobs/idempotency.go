package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// MaxKeyLength is the longest Idempotency-Key (of printable ASCII).
const MaxKeyLength = 255

// ValidKey says whether key may be an Idempotency-Key: 1–MaxKeyLength
// printable ASCII characters (space to ~); anything else is errs.Invalid.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLength {
		return errs.E(errs.Invalid, "Idempotency-Key must be 1-%d printable ASCII characters", MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return errs.E(errs.Invalid, "Idempotency-Key must be 1-%d printable ASCII characters", MaxKeyLength)
		}
	}
	return nil
}

// KeyClaim is one attempt at an upload under an owner's Idempotency-Key.
type KeyClaim struct {
	Owner, Key string
	// Fingerprint names the upload the key is used for: the same key with
	// another fingerprint is KeyMismatch.
	Fingerprint string
	// Attempt is the id of the job the attempt will record: the claim is
	// the attempt's while the key's row names it.
	Attempt ID
	// Lease is how long the claim holds unless renewed (RenewKey): a claim
	// of an attempt that died lapses then, and the next attempt takes it.
	Lease time.Duration
	// TTL is how long the key answers with its job once recorded.
	TTL time.Duration
}

// KeyState is what ClaimKey found.
type KeyState int

// The states of a key.
const (
	// KeyClaimed: the attempt holds the key and goes on with the upload.
	KeyClaimed KeyState = iota
	// KeyDone: the key's job is recorded (KeyStatus.JobID): answer with it.
	KeyDone
	// KeyBusy: another attempt holds the key (for KeyStatus.RetryAfter at
	// most, unless renewed).
	KeyBusy
	// KeyMismatch: the key was used for another upload.
	KeyMismatch
)

// KeyStatus is ClaimKey's answer.
type KeyStatus struct {
	State KeyState
	// JobID is the key's job (KeyDone).
	JobID ID
	// RetryAfter is how long the other attempt's claim still holds (KeyBusy).
	RetryAfter time.Duration
}

// claimAttempts bounds ClaimKey's rounds: a key released or expired between
// its upsert and its read is claimed again.
const claimAttempts = 3

// ClaimKey claims c's key for c's attempt, unless the key is taken: a row
// is inserted, or taken over when its job was recorded more than TTL ago
// or its claim lapsed (the attempt died without releasing it). One upsert:
// of concurrent attempts with one key exactly one gets KeyClaimed. A key
// held by another attempt is KeyBusy, one whose job is recorded KeyDone,
// either used for another fingerprint KeyMismatch.
func (s *Store) ClaimKey(ctx context.Context, c KeyClaim) (KeyStatus, error) {
	for range claimAttempts {
		tag, err := s.pool.Exec(ctx, `
			insert into idempotency_keys as k (owner, key, fingerprint, attempt, claimed_until, expires_at)
			values ($1, $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(secs => $6))
			on conflict (owner, key) do update
				set fingerprint = excluded.fingerprint, attempt = excluded.attempt, job_id = null,
					claimed_until = excluded.claimed_until, expires_at = excluded.expires_at, created_at = now()
				where (k.job_id is null and k.claimed_until <= now())
					or (k.job_id is not null and k.expires_at <= now())`,
			c.Owner, c.Key, c.Fingerprint, c.Attempt.Hex(), c.Lease.Seconds(), max(c.TTL, c.Lease).Seconds())
		if err != nil {
			return KeyStatus{}, pgdb.Err(err, DatabaseName, "idempotency key: claim")
		}
		if tag.RowsAffected() == 1 {
			return KeyStatus{State: KeyClaimed}, nil
		}
		var (
			fingerprint string
			jobID       *string
			left        *float64
		)
		err = s.pool.QueryRow(ctx, `
			select fingerprint, job_id, extract(epoch from claimed_until - now())::float8
			from idempotency_keys where owner = $1 and key = $2`, c.Owner, c.Key).Scan(&fingerprint, &jobID, &left)
		if pgdb.IsNotFound(err) {
			continue // released meanwhile: claim it again
		}
		if err != nil {
			return KeyStatus{}, pgdb.Err(err, DatabaseName, "idempotency key: read")
		}
		switch {
		case fingerprint != c.Fingerprint:
			return KeyStatus{State: KeyMismatch}, nil
		case jobID != nil:
			id, err := ParseID(*jobID)
			if err != nil {
				return KeyStatus{}, err
			}
			return KeyStatus{State: KeyDone, JobID: id}, nil
		}
		st := KeyStatus{State: KeyBusy}
		if left != nil && *left > 0 {
			st.RetryAfter = time.Duration(*left * float64(time.Second))
		}
		return st, nil
	}
	return KeyStatus{State: KeyBusy, RetryAfter: time.Second}, nil
}

// RenewKey extends c's claim by its Lease while the attempt runs. It
// reports false when the claim is no longer c's (taken over, or the job
// recorded).
func (s *Store) RenewKey(ctx context.Context, c KeyClaim) (bool, error) {
	return s.update(ctx, "idempotency key: renew", `
		update idempotency_keys set claimed_until = now() + make_interval(secs => $4)
		where owner = $1 and key = $2 and attempt = $3 and job_id is null`,
		c.Owner, c.Key, c.Attempt.Hex(), c.Lease.Seconds())
}

// ReleaseKey gives up c's claim of a failed attempt: the key is free for
// the next. A key another attempt took over, or whose job is recorded, is
// left alone.
func (s *Store) ReleaseKey(ctx context.Context, c KeyClaim) error {
	_, err := s.pool.Exec(ctx, `
		delete from idempotency_keys where owner = $1 and key = $2 and attempt = $3 and job_id is null`,
		c.Owner, c.Key, c.Attempt.Hex())
	return pgdb.Err(err, DatabaseName, "idempotency key: release")
}

// completeKey sets c's key's job, in tx (the transaction that writes the
// job): a claim no longer c's (another attempt took it over after it
// lapsed) is errs.Conflict, and the transaction must roll back.
func completeKey(ctx context.Context, tx pgx.Tx, c *KeyClaim) error {
	tag, err := tx.Exec(ctx, `
		update idempotency_keys set job_id = $3, claimed_until = null, expires_at = now() + make_interval(secs => $4)
		where owner = $1 and key = $2 and attempt = $3 and job_id is null`,
		c.Owner, c.Key, c.Attempt.Hex(), c.TTL.Seconds())
	if err != nil {
		return pgdb.Err(err, DatabaseName, "idempotency key: complete")
	}
	if tag.RowsAffected() == 0 {
		return errs.E(errs.Conflict, "another request with this Idempotency-Key took it over")
	}
	return nil
}

// SweepKeys deletes up to limit keys past their expiry (none whose attempt
// still holds its claim) and reports how many.
func (s *Store) SweepKeys(ctx context.Context, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		delete from idempotency_keys where (owner, key) in (
			select owner, key from idempotency_keys
			where expires_at < now() and (claimed_until is null or claimed_until < now())
			limit $1
			for update skip locked)`, limit)
	if err != nil {
		return 0, pgdb.Err(err, DatabaseName, "idempotency keys: sweep")
	}
	return tag.RowsAffected(), nil
}
