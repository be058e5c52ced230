package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/audiomill/audiomill/platform/pgdb"
)

// Claim takes up to limit unpublished events whose claim ran out (the
// oldest claim first) and claims each for lease, in one statement: rows
// another replica is claiming at the same moment are skipped (FOR UPDATE
// SKIP LOCKED), so no two relays take one row, and none waits for another.
// A dead event is never claimed again.
func (s *Store) Claim(ctx context.Context, limit int, lease time.Duration) ([]Event, error) {
	rows, _ := s.pool.Query(ctx, `
		update outbox set claimed_until = now() + make_interval(secs => $2), attempts = attempts + 1
		where id in (
			select id from outbox
			where published_at is null and dead_at is null and claimed_until < now()
			order by claimed_until, id
			limit $1
			for update skip locked)
		returning id, job_id, type, envelope, attempts`, limit, lease.Seconds())
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var (
			ev    Event
			jobID string
		)
		if err := row.Scan(&ev.ID, &jobID, &ev.Type, &ev.Envelope, &ev.Attempts); err != nil {
			return Event{}, err
		}
		id, err := ParseID(jobID)
		ev.JobID = id
		return ev, err
	})
	if err != nil {
		return nil, pgdb.Err(err, DatabaseName, "outbox: claim")
	}
	return list, nil
}

// MarkPublished records that the broker confirmed event id.
func (s *Store) MarkPublished(ctx context.Context, id int64) error {
	_, err := s.pool.Exec(ctx, `update outbox set published_at = now() where id = $1 and published_at is null`, id)
	return pgdb.Err(err, DatabaseName, "outbox: mark published")
}

// Release gives the events ids back to the relays, claimable after after
// (0: at once), unless published since.
func (s *Store) Release(ctx context.Context, ids []int64, after time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
		update outbox set claimed_until = now() + make_interval(secs => $2)
		where id = any($1) and published_at is null`, ids, after.Seconds())
	return pgdb.Err(err, DatabaseName, "outbox: release")
}

// Discard sets aside an event that can never be published: it is marked
// dead with problem (never claimed again), and its job, while queued or
// converting, fails with reason. Both in one statement, and the job's
// Change in its transaction.
func (s *Store) Discard(ctx context.Context, ev Event, problem, reason string) error {
	_, err := s.updateJob(ctx, "outbox: discard", `
		with ev as (
			update outbox set dead_at = now(), last_error = $2
			where id = $1 and published_at is null and dead_at is null
			returning job_id
		)
		update jobs set status = 'failed', reason = $3, retryable = false, updated_at = now()
		where id in (select job_id from ev) and status in ('queued', 'converting')`,
		ev.ID, problem, reason)
	return err
}

// Prune deletes the events published more than olderThan ago, and reports
// how many.
func (s *Store) Prune(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `delete from outbox where published_at < now() - make_interval(secs => $1)`,
		olderThan.Seconds())
	if err != nil {
		return 0, pgdb.Err(err, DatabaseName, "outbox: prune")
	}
	return tag.RowsAffected(), nil
}
