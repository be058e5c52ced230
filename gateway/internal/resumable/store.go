package resumable

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// Store keeps the uploads in the gateway's database (the table uploads of
// jobs.Migrations). Its errors of an unreachable database are
// errs.Unavailable.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const uploadColumns = `id, owner, owner_email, locale, request_id, job_id, storage_url,
	file_name, content_type, length, expires_at, completed_at`

func scanUpload(row pgx.CollectableRow) (Upload, error) {
	var (
		u     Upload
		jobID string
		done  *time.Time
	)
	err := row.Scan(&u.ID, &u.Owner, &u.OwnerEmail, &u.Locale, &u.RequestID, &jobID, &u.StorageURL,
		&u.Name, &u.ContentType, &u.Length, &u.Expires, &done)
	if err != nil {
		return Upload{}, err
	}
	if u.JobID, err = jobs.ParseID(jobID); err != nil {
		return Upload{}, err
	}
	u.Completed = done != nil
	u.Expires = u.Expires.UTC()
	return u, nil
}

// insert records u.
func (s *Store) insert(ctx context.Context, u Upload) error {
	_, err := s.pool.Exec(ctx, `
		insert into uploads (id, owner, owner_email, locale, request_id, job_id, storage_url,
			file_name, content_type, length, expires_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		u.ID, u.Owner, u.OwnerEmail, u.Locale, u.RequestID, u.JobID.Hex(), u.StorageURL,
		u.Name, u.ContentType, u.Length, u.Expires)
	return pgdb.Err(err, jobs.DatabaseName, "uploads: insert")
}

// get returns owner's upload id: one of someone else's, an expired
// unfinished one and one that does not exist are the same errs.NotFound.
func (s *Store) get(ctx context.Context, owner, id string) (Upload, error) {
	rows, _ := s.pool.Query(ctx, `select `+uploadColumns+` from uploads
		where id = $1 and owner = $2 and (completed_at is not null or expires_at > now())`, id, owner)
	u, err := pgx.CollectExactlyOneRow(rows, scanUpload)
	if pgdb.IsNotFound(err) {
		return Upload{}, errNoUpload()
	}
	if err != nil {
		return Upload{}, pgdb.Err(err, jobs.DatabaseName, "uploads: get")
	}
	return u, nil
}

// complete marks id's job recorded; the row then lasts keep more.
func (s *Store) complete(ctx context.Context, id string, keep time.Duration) error {
	_, err := s.pool.Exec(ctx, `
		update uploads set completed_at = now(), expires_at = now() + make_interval(secs => $2)
		where id = $1 and completed_at is null`, id, keep.Seconds())
	return pgdb.Err(err, jobs.DatabaseName, "uploads: complete")
}

// remove deletes the unfinished upload id; false when it was completed
// meanwhile (or is gone).
func (s *Store) remove(ctx context.Context, id string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `delete from uploads where id = $1 and completed_at is null`, id)
	if err != nil {
		return false, pgdb.Err(err, jobs.DatabaseName, "uploads: delete")
	}
	return tag.RowsAffected() == 1, nil
}

// Sweep deletes up to limit uploads past their expiry and reports how many.
func (s *Store) Sweep(ctx context.Context, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		delete from uploads where id in (
			select id from uploads where expires_at < now() limit $1 for update skip locked)`, limit)
	if err != nil {
		return 0, pgdb.Err(err, jobs.DatabaseName, "uploads: sweep")
	}
	return tag.RowsAffected(), nil
}

func errNoUpload() error { return errs.E(errs.NotFound, "no such upload") }
