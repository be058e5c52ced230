// Package jobs is the gateway's record of conversion jobs, in PostgreSQL:
// who owns each, its video and MP3 in filestorage, its status, and the
// transactional outbox of its events (the video.uploaded each upload
// publishes is written in the transaction that writes the job; the relay
// publishes what was never confirmed).
//
// Status moves queued → converting (progress 0–100) → done | failed. Each
// event is applied by one conditional UPDATE, so concurrent events of one
// job never lose an update and never move it backwards: progress only
// grows, a done job stays done whatever arrives after, and a failed job
// only becomes done (a late ready after a failure: the MP3 exists).
package jobs

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/batch"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// DatabaseName is the name the error messages give the jobs' database
// ("the job database is unavailable").
const DatabaseName = "job"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema's migrations (tern files), for
// pgdb.Migrate and service.App.Postgres.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded: cannot happen
	}
	return sub
}

// Status is where a job is.
type Status string

// The statuses of a job.
const (
	Queued     Status = "queued"
	Converting Status = "converting"
	Done       Status = "done"
	Failed     Status = "failed"
)

// ParseStatus parses a status filter; anything but the four statuses is
// errs.Invalid.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case Queued, Converting, Done, Failed:
		return st, nil
	}
	return "", errs.E(errs.Invalid, "status must be one of queued, converting, done, failed")
}

// Video is the uploaded video, stored in filestorage's videos bucket.
type Video struct {
	FileID      string `json:"id"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

// Audio is the MP3 the converter made, in filestorage's audio bucket.
type Audio struct {
	FileID          string  `json:"id"`
	Size            int64   `json:"size"`
	DurationSeconds float64 `json:"duration_seconds"`
	BitrateKbps     int     `json:"bitrate_kbps,omitempty"`
}

// Job is one conversion job.
type Job struct {
	ID         ID
	Owner      string
	OwnerEmail string
	Locale     string
	Status     Status
	Progress   int
	Video      Video
	Audio      *Audio // set once done
	Reason     string // why it failed
	Retryable  bool   // whether uploading again may succeed
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// RequestID is the upload's request id: the events' correlation id.
	RequestID string
}

// Event is a row of the outbox: a message to publish about a job.
type Event struct {
	// ID is the row's id (set by Store.Create).
	ID    int64
	JobID ID
	// Type is the event's type and routing key.
	Type string
	// Envelope is the message body (the encoded envelope), published as is.
	Envelope []byte
	// Attempts counts the relays' claims of the row.
	Attempts int
}

// Store keeps jobs and their outbox in PostgreSQL. Its errors of an
// unreachable database are errs.Unavailable.
type Store struct {
	pool *pgxpool.Pool
	// byID answers Get: the lookups of concurrent requests share one
	// "id = any($1)" (a job is read by every poll of its page).
	byID *batch.Loader[ID, Job]
}

// getInFlight bounds the batched lookups of Get in flight at once.
const getInFlight = 4

// NewStore returns a Store on pool, whose schema is Migrations.
func NewStore(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	s.byID = batch.New(s.fetch, batch.Options{MaxInFlight: getInFlight})
	return s
}

// jobColumns are the columns scanJob reads, in its order.
const jobColumns = `id, owner, owner_email, locale, status, progress,
	video_file_id, video_name, video_content_type, video_size,
	audio_file_id, audio_size, audio_duration_seconds, audio_bitrate_kbps,
	reason, retryable, request_id, created_at, updated_at`

func scanJob(row pgx.CollectableRow) (Job, error) {
	var (
		j        Job
		id       string
		progress int16
		audioID  *string
		aSize    *int64
		aDur     *float64
		aKbps    *int32
	)
	err := row.Scan(&id, &j.Owner, &j.OwnerEmail, &j.Locale, &j.Status, &progress,
		&j.Video.FileID, &j.Video.Name, &j.Video.ContentType, &j.Video.Size,
		&audioID, &aSize, &aDur, &aKbps,
		&j.Reason, &j.Retryable, &j.RequestID, &j.CreatedAt, &j.UpdatedAt)
	if err != nil {
		return Job{}, err
	}
	if j.ID, err = ParseID(id); err != nil {
		return Job{}, fmt.Errorf("job id %q in the database: %w", id, err)
	}
	j.Progress = int(progress)
	if audioID != nil {
		j.Audio = &Audio{FileID: *audioID, Size: deref(aSize), DurationSeconds: deref(aDur), BitrateKbps: int(deref(aKbps))}
	}
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	return j, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Create records j as queued, and ev, its first event, in the outbox, in
// one transaction (neither is written without the other), with its Change.
// ev's publication belongs to the caller for lease: no relay claims it
// before. j.ID must be set (ev names it); Create sets j's Status,
// CreatedAt and UpdatedAt, and ev's ID and JobID.
func (s *Store) Create(ctx context.Context, j *Job, ev *Event, lease time.Duration) error {
	return s.CreateClaimed(ctx, j, ev, lease, nil)
}

// CreateClaimed is Create that, when key is not nil, also records j as the
// job of key's Idempotency-Key, in the same transaction: j.ID must be
// key.Attempt, and a key no longer claimed by it (another attempt took it
// over) is errs.Conflict, with nothing written.
func (s *Store) CreateClaimed(ctx context.Context, j *Job, ev *Event, lease time.Duration, key *KeyClaim) error {
	if j.ID.IsZero() {
		return errors.New("jobs: create: the job has no id (its event must name it)")
	}
	if key != nil && key.Attempt != j.ID {
		return errors.New("jobs: create: the job is not the key's attempt")
	}
	j.Status, j.Progress = Queued, 0
	ev.JobID = j.ID
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := insertJob(ctx, tx, j, ev, lease); err != nil {
			return err
		}
		if key != nil {
			if err := completeKey(ctx, tx, key); err != nil {
				return err
			}
		}
		return recordChange(ctx, tx, ChangeJob, *j)
	})
	if err != nil && !errs.IsCoded(err) {
		return pgdb.Err(err, DatabaseName, "jobs: insert transaction")
	}
	return err
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func insertJob(ctx context.Context, q querier, j *Job, ev *Event, lease time.Duration) error {
	// Both inserts run in this one statement; the outbox row's foreign key
	// is checked at its end, when the job row is there.
	err := q.QueryRow(ctx, `
		with job as (
			insert into jobs (id, owner, owner_email, locale, status, progress,
				video_file_id, video_name, video_content_type, video_size, request_id, created_at, updated_at)
			values ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $8, $9, now(), now())
			returning created_at
		), ev as (
			insert into outbox (job_id, type, envelope, claimed_until)
			values ($1, $10, $11, now() + make_interval(secs => $12))
			returning id
		)
		select job.created_at, ev.id from job, ev`,
		j.ID.Hex(), j.Owner, j.OwnerEmail, j.Locale, j.Video.FileID, j.Video.Name, j.Video.ContentType, j.Video.Size,
		j.RequestID, ev.Type, ev.Envelope, lease.Seconds(),
	).Scan(&j.CreatedAt, &ev.ID)
	if err != nil {
		return pgdb.Err(err, DatabaseName, "jobs: insert "+j.ID.Hex())
	}
	j.CreatedAt = j.CreatedAt.UTC()
	j.UpdatedAt = j.CreatedAt
	return nil
}

// Get returns owner's job id; a job of someone else is errs.NotFound too.
// The read starts after the call (a job written before it is seen).
func (s *Store) Get(ctx context.Context, owner string, id ID) (Job, error) {
	j, err := s.byID.Load(ctx, id)
	if err != nil {
		return Job{}, pgdb.Err(err, DatabaseName, "jobs: get "+id.Hex())
	}
	if j.ID.IsZero() || j.Owner != owner {
		return Job{}, errs.E(errs.NotFound, "no such job")
	}
	return j, nil
}

// ByID returns job id, whoever owns it: for the consumer of the jobs'
// events, which acts for no user. A missing job is errs.NotFound.
func (s *Store) ByID(ctx context.Context, id ID) (Job, error) {
	j, err := s.byID.Load(ctx, id)
	if err != nil {
		return Job{}, pgdb.Err(err, DatabaseName, "jobs: get "+id.Hex())
	}
	if j.ID.IsZero() {
		return Job{}, errs.E(errs.NotFound, "no such job")
	}
	return j, nil
}

// fetch reads the jobs ids in one statement, in the order of ids (a zero
// Job where there is none).
func (s *Store) fetch(ctx context.Context, ids []ID) ([]Job, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = id.Hex()
	}
	rows, _ := s.pool.Query(ctx, `select `+jobColumns+` from jobs where id = any($1)`, keys)
	found, err := pgx.CollectRows(rows, scanJob)
	if err != nil {
		return nil, err
	}
	byID := make(map[ID]Job, len(found))
	for _, j := range found {
		byID[j.ID] = j
	}
	out := make([]Job, len(ids))
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out, nil
}

// ByAudio returns owner's job whose MP3 has file id audioID.
func (s *Store) ByAudio(ctx context.Context, owner, audioID string) (Job, error) {
	return s.one(ctx, "jobs: get by audio",
		`select `+jobColumns+` from jobs where owner = $1 and audio_file_id = $2 limit 1`, owner, audioID)
}

func (s *Store) one(ctx context.Context, what, sql string, args ...any) (Job, error) {
	rows, _ := s.pool.Query(ctx, sql, args...)
	j, err := pgx.CollectExactlyOneRow(rows, scanJob)
	if pgdb.IsNotFound(err) {
		return Job{}, errs.E(errs.NotFound, "no such job")
	}
	if err != nil {
		return Job{}, pgdb.Err(err, DatabaseName, what)
	}
	return j, nil
}

// ListOptions select a page of an owner's jobs.
type ListOptions struct {
	// Status, when set, keeps the jobs of that status only.
	Status Status
	// After, when set, starts the page after that position (older jobs).
	After Cursor
	// Limit is the most jobs returned (at least 1).
	Limit int
}

// List returns a page of owner's jobs, newest first (by created_at, then
// id): one index range scan, whatever the page's depth.
func (s *Store) List(ctx context.Context, owner string, o ListOptions) ([]Job, error) {
	sql := `select ` + jobColumns + ` from jobs where owner = $1`
	args := []any{owner}
	if o.Status != "" {
		args = append(args, string(o.Status))
		sql += fmt.Sprintf(` and status = $%d`, len(args))
	}
	if !o.After.IsZero() {
		args = append(args, o.After.CreatedAt, o.After.ID.Hex())
		sql += fmt.Sprintf(` and (created_at, id) < ($%d, $%d)`, len(args)-1, len(args))
	}
	args = append(args, max(o.Limit, 1))
	sql += fmt.Sprintf(` order by created_at desc, id desc limit $%d`, len(args))
	rows, _ := s.pool.Query(ctx, sql, args...)
	list, err := pgx.CollectRows(rows, scanJob)
	if err != nil {
		return nil, pgdb.Err(err, DatabaseName, "jobs: list")
	}
	if list == nil {
		list = []Job{}
	}
	return list, nil
}

// Delete removes owner's job id, and its events not yet published, and
// records its ChangeDeleted, in one transaction.
func (s *Store) Delete(ctx context.Context, owner string, id ID) error {
	found := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `delete from jobs where id = $1 and owner = $2`, id.Hex(), owner)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		found = true
		return recordChange(ctx, tx, ChangeDeleted, Job{ID: id, Owner: owner})
	})
	if err != nil {
		return pgdb.Err(err, DatabaseName, "jobs: delete "+id.Hex())
	}
	if !found {
		return errs.E(errs.NotFound, "no such job")
	}
	return nil
}

// SetProgress moves a queued or converting job to converting with percent,
// never lowering a progress already recorded. It reports whether the job
// changed; a missing, done or failed job, or a progress already reached, is
// left alone.
func (s *Store) SetProgress(ctx context.Context, id ID, percent int) (bool, error) {
	return s.updateJob(ctx, "jobs: progress "+id.Hex(), `
		update jobs set status = 'converting', progress = $2, updated_at = now()
		where id = $1 and status in ('queued', 'converting') and (status = 'queued' or progress < $2)`,
		id.Hex(), percent)
}

// SetDone records the job's MP3 (progress 100). A job already done is left
// as it is; a failed one becomes done.
func (s *Store) SetDone(ctx context.Context, id ID, a Audio) (bool, error) {
	return s.updateJob(ctx, "jobs: done "+id.Hex(), `
		update jobs set status = 'done', progress = 100, audio_file_id = $2, audio_size = $3,
			audio_duration_seconds = $4, audio_bitrate_kbps = $5, reason = '', retryable = false, updated_at = now()
		where id = $1 and status <> 'done'`,
		id.Hex(), a.FileID, a.Size, a.DurationSeconds, a.BitrateKbps)
}

// SetFailed records why the job failed; only a queued or converting job
// fails (a done job stays done).
func (s *Store) SetFailed(ctx context.Context, id ID, reason string, retryable bool) (bool, error) {
	return s.updateJob(ctx, "jobs: failed "+id.Hex(), `
		update jobs set status = 'failed', reason = $2, retryable = $3, updated_at = now()
		where id = $1 and status in ('queued', 'converting')`,
		id.Hex(), reason, retryable)
}

// update runs one conditional UPDATE and reports whether it changed a row.
// Under READ COMMITTED a second UPDATE of the same row waits for the first
// to commit and then evaluates its WHERE again on the new row, so each
// condition is checked against the latest state: no update is lost.
func (s *Store) update(ctx context.Context, what, sql string, args ...any) (bool, error) {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return false, pgdb.Err(err, DatabaseName, what)
	}
	return tag.RowsAffected() > 0, nil
}

// updateJob is update for a statement that ends in an UPDATE of one job:
// the job's change is recorded (recordChange) in the same transaction.
func (s *Store) updateJob(ctx context.Context, what, sql string, args ...any) (bool, error) {
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, sql+` returning `+jobColumns, args...)
		list, err := pgx.CollectRows(rows, scanJob)
		if err != nil || len(list) == 0 {
			return err
		}
		changed = true
		return recordChange(ctx, tx, ChangeJob, list[0])
	})
	if err != nil {
		return false, pgdb.Err(err, DatabaseName, what)
	}
	return changed, nil
}
