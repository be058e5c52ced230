package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/audiomill/audiomill/platform/pgdb"
)

// ChangesChannel is the PostgreSQL notification channel of the change feed:
// each transaction that records a Change notifies it with the owner, at
// commit.
const ChangesChannel = "job_events"

// changeLockClass is the first key of the owners' advisory locks
// (pg_advisory_xact_lock(changeLockClass, hashtext(owner))): the two-key
// space, apart from the one-key locks of the migrations.
const changeLockClass = 7419

// ChangeKind says what a Change records.
type ChangeKind string

// The kinds of Change.
const (
	// ChangeJob: the job was created or changed; Change.Job is its state
	// after the change.
	ChangeJob ChangeKind = "job"
	// ChangeDeleted: the job was deleted.
	ChangeDeleted ChangeKind = "deleted"
)

// Change is one entry of the jobs' change feed (table job_events): every
// change applied to a job is recorded in the transaction of the change.
// One owner's Change ids grow in commit order.
type Change struct {
	ID    int64
	Owner string
	JobID ID
	Kind  ChangeKind
	// Job is the job as the change left it (zero for ChangeDeleted).
	Job Job
}

// jobState is a job as a Change keeps it (column job, jsonb).
type jobState struct {
	Status    Status    `json:"status"`
	Progress  int       `json:"progress"`
	Video     Video     `json:"video"`
	Audio     *Audio    `json:"audio,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Retryable bool      `json:"retryable,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// recordChange writes the change of j (kind) in tx, after taking the
// owner's advisory lock, so that the owner's ids follow the commit order,
// and notifies ChangesChannel (delivered at commit). One round trip.
func recordChange(ctx context.Context, tx pgx.Tx, kind ChangeKind, j Job) error {
	var state []byte
	if kind == ChangeJob {
		var err error
		state, err = json.Marshal(jobState{Status: j.Status, Progress: j.Progress, Video: j.Video, Audio: j.Audio,
			Reason: j.Reason, Retryable: j.Retryable, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt})
		if err != nil {
			return fmt.Errorf("jobs: encode the change of %s: %w", j.ID.Hex(), err)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`select pg_advisory_xact_lock($1, hashtext($2))`, changeLockClass, j.Owner)
	b.Queue(`insert into job_events (owner, job_id, kind, job) values ($1, $2, $3, $4)`,
		j.Owner, j.ID.Hex(), string(kind), state)
	b.Queue(`select pg_notify($1, $2)`, ChangesChannel, j.Owner)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("jobs: record the change of %s: %w", j.ID.Hex(), err)
	}
	return nil
}

// Changes returns owner's changes after id after, oldest first, at most
// limit.
func (s *Store) Changes(ctx context.Context, owner string, after int64, limit int) ([]Change, error) {
	rows, _ := s.pool.Query(ctx, `select id, job_id, kind, job from job_events
		where owner = $1 and id > $2 order by id limit $3`, owner, after, max(limit, 1))
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Change, error) {
		c := Change{Owner: owner}
		var (
			id    string
			state []byte
		)
		if err := row.Scan(&c.ID, &id, &c.Kind, &state); err != nil {
			return Change{}, err
		}
		var err error
		if c.JobID, err = ParseID(id); err != nil {
			return Change{}, fmt.Errorf("job id %q in the change feed: %w", id, err)
		}
		if c.Kind == ChangeJob {
			var st jobState
			if err := json.Unmarshal(state, &st); err != nil {
				return Change{}, fmt.Errorf("change %d of job %s: %w", c.ID, id, err)
			}
			c.Job = Job{ID: c.JobID, Owner: owner, Status: st.Status, Progress: st.Progress, Video: st.Video,
				Audio: st.Audio, Reason: st.Reason, Retryable: st.Retryable,
				CreatedAt: st.CreatedAt.UTC(), UpdatedAt: st.UpdatedAt.UTC()}
		}
		return c, nil
	})
	if err != nil {
		return nil, pgdb.Err(err, DatabaseName, "jobs: read changes")
	}
	return list, nil
}

// ChangeBounds are where a stream of changes may start.
type ChangeBounds struct {
	// Latest is the owner's newest change id (0 when it has none kept).
	Latest int64
	// Pruned is the highest id the retention sweep deleted: a stream
	// resuming below it may have missed changes.
	Pruned int64
	// Newest is the highest id there has been (anyone's): a stream
	// resuming above it names an id this database never gave.
	Newest int64
}

// Bounds returns owner's ChangeBounds, in one statement.
func (s *Store) Bounds(ctx context.Context, owner string) (ChangeBounds, error) {
	var b ChangeBounds
	err := s.pool.QueryRow(ctx, `select
			coalesce((select max(id) from job_events where owner = $1), 0),
			(select upto from job_events_pruned),
			greatest((select upto from job_events_pruned), coalesce((select max(id) from job_events), 0))`,
		owner).Scan(&b.Latest, &b.Pruned, &b.Newest)
	if err != nil {
		return ChangeBounds{}, pgdb.Err(err, DatabaseName, "jobs: change bounds")
	}
	return b, nil
}

// PruneChanges deletes the changes recorded more than olderThan ago, and
// reports how many. It deletes a prefix of the ids (everything up to the
// newest old one) and records where it stopped (ChangeBounds.Pruned).
func (s *Store) PruneChanges(ctx context.Context, olderThan time.Duration) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var upto *int64
		if err := tx.QueryRow(ctx, `select max(id) from job_events where created_at < now() - make_interval(secs => $1)`,
			olderThan.Seconds()).Scan(&upto); err != nil || upto == nil {
			return err
		}
		tag, err := tx.Exec(ctx, `delete from job_events where id <= $1`, *upto)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `update job_events_pruned set upto = greatest(upto, $1)`, *upto)
		return err
	})
	if err != nil {
		return 0, pgdb.Err(err, DatabaseName, "jobs: prune changes")
	}
	return n, nil
}
