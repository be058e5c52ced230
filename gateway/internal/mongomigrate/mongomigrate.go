// Package mongomigrate is `gateway migrate-from-mongo`: it copies the jobs
// an earlier gateway kept in MongoDB (the "jobs" collection) into the
// PostgreSQL the gateway now uses, keeping their ids, statuses, MP3s and
// whether their video.uploaded was published. A job whose event was never
// confirmed gets an unpublished outbox row, which the relay publishes.
//
// It is idempotent: a job already in PostgreSQL is left as it is (and gets
// no second outbox row), so running it again copies nothing twice.
package mongomigrate

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// Defaults.
const (
	// DefaultMongoDatabase is the database the gateway kept its jobs in
	// (MONGO_DATABASE).
	DefaultMongoDatabase = "audiomill_gateway"
	// Collection is the collection of the jobs.
	Collection = "jobs"
	// batchSize is how many jobs go to PostgreSQL in one round trip.
	batchSize = 500
	// timeout bounds the whole copy.
	timeout = 30 * time.Minute
)

// mongoJob is a job as the gateway wrote it to MongoDB (its jobs.Job
// before the move to PostgreSQL); only this command reads that shape.
type mongoJob struct {
	ID         bson.ObjectID `bson:"_id"`
	Owner      string        `bson:"owner"`
	OwnerEmail string        `bson:"owner_email"`
	Locale     string        `bson:"locale,omitempty"`
	Status     string        `bson:"status"`
	Progress   int           `bson:"progress"`
	Video      mongoVideo    `bson:"video"`
	Audio      *mongoAudio   `bson:"audio,omitempty"`
	Reason     string        `bson:"reason,omitempty"`
	Retryable  bool          `bson:"retryable,omitempty"`
	CreatedAt  time.Time     `bson:"created_at"`
	UpdatedAt  time.Time     `bson:"updated_at"`
	RequestID  string        `bson:"request_id"`
	Published  bool          `bson:"published"`
	LeaseUntil time.Time     `bson:"lease_until"`
}

type mongoVideo struct {
	FileID      string `bson:"file_id"`
	Name        string `bson:"name"`
	ContentType string `bson:"content_type"`
	Size        int64  `bson:"size"`
}

type mongoAudio struct {
	FileID          string  `bson:"file_id"`
	Size            int64   `bson:"size"`
	DurationSeconds float64 `bson:"duration_seconds"`
	BitrateKbps     int     `bson:"bitrate_kbps"`
}

// Counts is what a copy did.
type Counts struct {
	Read        int // jobs read from MongoDB
	Copied      int // jobs written to PostgreSQL
	Unpublished int // of those, with an outbox row for the relay
	Present     int // jobs already in PostgreSQL, left alone
	Failed      int // jobs that could not be copied (logged)
}

// Run is the command: it reads MONGO_URI, MONGO_DATABASE (default
// audiomill_gateway), DATABASE_URL and DATABASE_MAX_CONNS from env, copies,
// prints the counts to out and problems to errOut, and returns the exit
// code: 0 when every job is in PostgreSQL, 1 when some could not be copied
// or a database failed, 2 for bad configuration.
func Run(ctx context.Context, env func(string) string, out, errOut io.Writer) int {
	const name = "gateway migrate-from-mongo"
	r := config.NewReader(env)
	mcfg := mongoconn.ReadConfig(r, DefaultMongoDatabase)
	pcfg := pgdb.ReadConfig(r, pgdb.DefaultURL(DefaultMongoDatabase))
	if err := r.Err(); err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", name, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client, err := mongoconn.Connect(mcfg)
	if err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", name, err)
		return 1
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	pool, err := pgdb.Connect(pcfg)
	if err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", name, err)
		return 1
	}
	defer pool.Close()
	if err := pgdb.Migrate(ctx, pool, jobs.Migrations()); err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", name, err)
		return 1
	}
	c, err := Copy(ctx, client.Database(mcfg.Database), pool, errOut)
	fmt.Fprintf(out, "%s: read %d jobs from MongoDB database %s; copied %d (%d unpublished, queued for the relay); %d already in PostgreSQL; %d failed\n",
		name, c.Read, mcfg.Database, c.Copied, c.Unpublished, c.Present, c.Failed)
	if err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", name, err)
		return 1
	}
	if c.Failed > 0 {
		return 1
	}
	return 0
}

// Copy copies src's jobs into pool's jobs (whose schema is migrated),
// batchSize at a time, in _id order. A job that cannot be copied (a
// field PostgreSQL refuses) is reported to problems and counted; the others
// are copied.
func Copy(ctx context.Context, src *mongo.Database, pool *pgxpool.Pool, problems io.Writer) (Counts, error) {
	var c Counts
	cur, err := src.Collection(Collection).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return c, fmt.Errorf("read mongodb jobs: %w", err)
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	batch := make([]row, 0, batchSize)
	flush := func() error {
		err := insert(ctx, pool, batch, &c, problems)
		batch = batch[:0]
		return err
	}
	for cur.Next(ctx) {
		c.Read++
		var m mongoJob
		if err := cur.Decode(&m); err != nil {
			c.Failed++
			fmt.Fprintf(problems, "job %v: unreadable document: %v\n", cur.Current.Lookup("_id"), err)
			continue
		}
		rw, err := convert(m)
		if err != nil {
			c.Failed++
			fmt.Fprintf(problems, "job %s: %v\n", m.ID.Hex(), err)
			continue
		}
		if batch = append(batch, rw); len(batch) == batchSize {
			if err := flush(); err != nil {
				return c, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return c, fmt.Errorf("read mongodb jobs: %w", err)
	}
	return c, flush()
}

// row is a job to insert, with its event when it was never published.
type row struct {
	job   jobs.Job
	event *jobs.Event
}

// convert turns an old document into a row.
func convert(m mongoJob) (row, error) {
	j := jobs.Job{ID: jobs.ID(m.ID), Owner: m.Owner, OwnerEmail: m.OwnerEmail, Locale: m.Locale,
		Status: jobs.Status(m.Status), Progress: min(max(m.Progress, 0), 100),
		Video:  jobs.Video{FileID: m.Video.FileID, Name: m.Video.Name, ContentType: m.Video.ContentType, Size: m.Video.Size},
		Reason: m.Reason, Retryable: m.Retryable, RequestID: m.RequestID,
		CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
	if j.Status == "" {
		j.Status = jobs.Queued
	}
	if _, err := jobs.ParseStatus(string(j.Status)); err != nil {
		return row{}, fmt.Errorf("unknown status %q", m.Status)
	}
	if m.Audio != nil {
		j.Audio = &jobs.Audio{FileID: m.Audio.FileID, Size: m.Audio.Size, DurationSeconds: m.Audio.DurationSeconds,
			BitrateKbps: m.Audio.BitrateKbps}
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = m.ID.Timestamp()
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = j.CreatedAt
	}
	rw := row{job: j}
	if !m.Published {
		// Not validated: an event the contract refuses still gets its row,
		// which the relay sets aside (failing the job with the reason).
		ev, err := pipeline.UnvalidatedUploadedEvent(j)
		if err != nil {
			return row{}, err
		}
		rw.event = &ev
	}
	return rw, nil
}

// insertSQL inserts a job unless its id is there, and its outbox row when
// the job was inserted and has an event ($20 null: none); it returns
// whether each was written.
const insertSQL = `
	with job as (
		insert into jobs (id, owner, owner_email, locale, status, progress,
			video_file_id, video_name, video_content_type, video_size,
			audio_file_id, audio_size, audio_duration_seconds, audio_bitrate_kbps,
			reason, retryable, request_id, created_at, updated_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		on conflict (id) do nothing
		returning id
	), ev as (
		insert into outbox (job_id, type, envelope, claimed_until)
		select id, $20, $21, now() from job where $20::text is not null
		returning id
	)
	select (select count(*) from job), (select count(*) from ev)`

func args(r row) []any {
	j := r.job
	var (
		audioID          *string
		aSize            *int64
		aDur             *float64
		aKbps            *int
		evType, envelope any
	)
	if j.Audio != nil {
		audioID, aSize, aDur, aKbps = &j.Audio.FileID, &j.Audio.Size, &j.Audio.DurationSeconds, &j.Audio.BitrateKbps
	}
	if r.event != nil {
		evType, envelope = r.event.Type, r.event.Envelope
	}
	return []any{j.ID.Hex(), j.Owner, j.OwnerEmail, j.Locale, string(j.Status), j.Progress,
		j.Video.FileID, j.Video.Name, j.Video.ContentType, j.Video.Size,
		audioID, aSize, aDur, aKbps, j.Reason, j.Retryable, j.RequestID, j.CreatedAt, j.UpdatedAt,
		evType, envelope}
}

// insert writes rows in one transaction; when PostgreSQL refuses one, it
// writes them one by one instead, reporting the refused.
func insert(ctx context.Context, pool *pgxpool.Pool, rows []row, c *Counts, problems io.Writer) error {
	if len(rows) == 0 {
		return nil
	}
	var got Counts
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		got = Counts{}
		b := &pgx.Batch{}
		for _, r := range rows {
			b.Queue(insertSQL, args(r)...).QueryRow(func(row pgx.Row) error {
				return count(row, &got)
			})
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err == nil {
		c.Copied, c.Unpublished, c.Present = c.Copied+got.Copied, c.Unpublished+got.Unpublished, c.Present+got.Present
		return nil
	}
	if pgdb.Unavailable(err) || ctx.Err() != nil {
		return pgdb.Err(err, jobs.DatabaseName, "copy jobs")
	}
	for _, r := range rows {
		err := count(pool.QueryRow(ctx, insertSQL, args(r)...), c)
		if pgdb.Unavailable(err) || ctx.Err() != nil {
			return pgdb.Err(err, jobs.DatabaseName, "copy job "+r.job.ID.Hex())
		}
		if err != nil {
			c.Failed++
			fmt.Fprintf(problems, "job %s: %v\n", r.job.ID.Hex(), redact(err))
		}
	}
	return nil
}

// count adds what one insert did to c.
func count(row pgx.Row, c *Counts) error {
	var jobsN, events int
	if err := row.Scan(&jobsN, &events); err != nil {
		return err
	}
	if jobsN == 0 {
		c.Present++
		return nil
	}
	c.Copied++
	c.Unpublished += events
	return nil
}

// redact keeps an error to its first line (PostgreSQL's detail may quote
// the row, with the owner's email).
func redact(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
