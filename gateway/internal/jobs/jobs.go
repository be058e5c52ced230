// Package jobs is the gateway's record of conversion jobs, in the MongoDB
// collection "jobs": who owns each, its video and MP3 in filestorage, its
// status, and whether its video.uploaded event has been confirmed by the
// broker (the relay republishes those that have not).
//
// Status moves queued → converting (progress 0–100) → done | failed. Event
// updates are idempotent and never move a job backwards: a done job stays
// done whatever arrives after.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/mongoconn"
)

// Collection is the name of the jobs collection.
const Collection = "jobs"

// Status is where a job is.
type Status string

// The statuses of a job.
const (
	Queued     Status = "queued"
	Converting Status = "converting"
	Done       Status = "done"
	Failed     Status = "failed"
)

// Video is the uploaded video, stored in filestorage's videos bucket.
type Video struct {
	FileID      string `bson:"file_id" json:"id"`
	Name        string `bson:"name" json:"name"`
	ContentType string `bson:"content_type" json:"content_type"`
	Size        int64  `bson:"size" json:"size"`
}

// Audio is the MP3 the converter made, in filestorage's audio bucket.
type Audio struct {
	FileID          string  `bson:"file_id" json:"id"`
	Size            int64   `bson:"size" json:"size"`
	DurationSeconds float64 `bson:"duration_seconds" json:"duration_seconds"`
	BitrateKbps     int     `bson:"bitrate_kbps" json:"bitrate_kbps,omitempty"`
}

// Job is one conversion job.
type Job struct {
	ID         bson.ObjectID `bson:"_id"`
	Owner      string        `bson:"owner"`
	OwnerEmail string        `bson:"owner_email"`
	Locale     string        `bson:"locale,omitempty"`
	Status     Status        `bson:"status"`
	Progress   int           `bson:"progress"`
	Video      Video         `bson:"video"`
	Audio      *Audio        `bson:"audio,omitempty"`
	Reason     string        `bson:"reason,omitempty"`
	Retryable  bool          `bson:"retryable,omitempty"`
	CreatedAt  time.Time     `bson:"created_at"`
	UpdatedAt  time.Time     `bson:"updated_at"`
	// RequestID is the upload's request id: the events' correlation id.
	RequestID string `bson:"request_id"`
	// Published is set once the broker confirmed video.uploaded.
	Published bool `bson:"published"`
	// LeaseUntil: until then, one publisher (the upload, or one relay) owns
	// the publication of an unpublished job; others leave it alone.
	LeaseUntil time.Time `bson:"lease_until"`
}

// Store keeps jobs in MongoDB.
type Store struct {
	coll *mongo.Collection
	now  func() time.Time
}

// NewStore returns a Store on db's jobs collection.
func NewStore(db *mongo.Database) *Store {
	return &Store{coll: db.Collection(Collection), now: time.Now}
}

// EnsureIndexes creates the indexes the queries use.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	err := mongoconn.EnsureIndexes(ctx, s.coll,
		mongo.IndexModel{Keys: bson.D{{Key: "owner", Value: 1}, {Key: "_id", Value: -1}}},
		mongo.IndexModel{Keys: bson.D{{Key: "published", Value: 1}, {Key: "lease_until", Value: 1}}},
		mongo.IndexModel{Keys: bson.D{{Key: "owner", Value: 1}, {Key: "audio.file_id", Value: 1}}},
	)
	if err != nil {
		return fmt.Errorf("jobs: create indexes: %w", mongoErr(err))
	}
	return nil
}

// ParseID parses a job id (24 hex digits); anything else is errs.Invalid.
func ParseID(s string) (bson.ObjectID, error) {
	id, err := bson.ObjectIDFromHex(s)
	if err != nil {
		return bson.ObjectID{}, errs.E(errs.Invalid, "malformed job id")
	}
	return id, nil
}

// NewID returns a fresh job id.
func NewID() bson.ObjectID { return bson.NewObjectID() }

// Create inserts j as queued and unpublished, its publication leased to the
// caller for lease (the relay leaves it alone until then).
func (s *Store) Create(ctx context.Context, j *Job, lease time.Duration) error {
	now := s.now().UTC().Truncate(time.Millisecond)
	if j.ID.IsZero() {
		j.ID = NewID()
	}
	j.Status, j.Published, j.CreatedAt, j.UpdatedAt = Queued, false, now, now
	j.LeaseUntil = now.Add(lease)
	if _, err := s.coll.InsertOne(ctx, j); err != nil {
		return fmt.Errorf("jobs: insert %s: %w", j.ID.Hex(), mongoErr(err))
	}
	return nil
}

// Get returns owner's job id; a job of someone else is errs.NotFound too.
func (s *Store) Get(ctx context.Context, owner string, id bson.ObjectID) (Job, error) {
	return s.findOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}})
}

// ByAudio returns owner's job whose MP3 has file id audioID.
func (s *Store) ByAudio(ctx context.Context, owner, audioID string) (Job, error) {
	return s.findOne(ctx, bson.D{{Key: "owner", Value: owner}, {Key: "audio.file_id", Value: audioID}})
}

func (s *Store) findOne(ctx context.Context, filter bson.D) (Job, error) {
	var j Job
	err := s.coll.FindOne(ctx, filter).Decode(&j)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Job{}, errs.E(errs.NotFound, "no such job")
	}
	if err != nil {
		return Job{}, fmt.Errorf("jobs: find: %w", mongoErr(err))
	}
	return j, nil
}

// List returns up to limit of owner's jobs, newest first, older than the
// job before (zero: from the newest).
func (s *Store) List(ctx context.Context, owner string, before bson.ObjectID, limit int) ([]Job, error) {
	filter := bson.D{{Key: "owner", Value: owner}}
	if !before.IsZero() {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$lt", Value: before}}})
	}
	cur, err := s.coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", mongoErr(err))
	}
	list := []Job{}
	if err := cur.All(ctx, &list); err != nil {
		return nil, fmt.Errorf("jobs: list: %w", mongoErr(err))
	}
	return list, nil
}

// Delete removes owner's job id.
func (s *Store) Delete(ctx context.Context, owner string, id bson.ObjectID) error {
	res, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}})
	if err != nil {
		return fmt.Errorf("jobs: delete %s: %w", id.Hex(), mongoErr(err))
	}
	if res.DeletedCount == 0 {
		return errs.E(errs.NotFound, "no such job")
	}
	return nil
}

// MarkPublished records that the broker confirmed the job's video.uploaded.
func (s *Store) MarkPublished(ctx context.Context, id bson.ObjectID) error {
	_, err := s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "published", Value: false}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "published", Value: true}}}})
	if err != nil {
		return fmt.Errorf("jobs: mark %s published: %w", id.Hex(), mongoErr(err))
	}
	return nil
}

// Unpublished returns up to limit unpublished jobs whose publication lease
// has run out, oldest lease first. It only reads: who publishes each is
// decided by the caller's lock (FerretDB's findAndModify is not atomic
// between concurrent callers, and its updates rewrite whole documents, so
// a claim written here could even undo another replica's MarkPublished).
func (s *Store) Unpublished(ctx context.Context, limit int) ([]Job, error) {
	cur, err := s.coll.Find(ctx,
		bson.D{{Key: "published", Value: false}, {Key: "lease_until", Value: bson.D{{Key: "$lt", Value: s.now().UTC()}}}},
		options.Find().SetSort(bson.D{{Key: "lease_until", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("jobs: find unpublished: %w", mongoErr(err))
	}
	var list []Job
	if err := cur.All(ctx, &list); err != nil {
		return nil, fmt.Errorf("jobs: find unpublished: %w", mongoErr(err))
	}
	return list, nil
}

// SetProgress moves a queued or converting job to converting with percent
// (never lower than a progress already recorded). It reports whether the
// job changed; a missing, done or failed job is left alone.
func (s *Store) SetProgress(ctx context.Context, id bson.ObjectID, percent int) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{Queued, Converting}}}},
			{Key: "progress", Value: bson.D{{Key: "$lte", Value: percent}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: Converting}, {Key: "progress", Value: percent},
			{Key: "published", Value: true}, {Key: "updated_at", Value: s.now().UTC()}}}})
	if err != nil {
		return false, fmt.Errorf("jobs: progress %s: %w", id.Hex(), mongoErr(err))
	}
	return res.ModifiedCount > 0, nil
}

// SetDone records the job's MP3. A job already done is left as it is.
func (s *Store) SetDone(ctx context.Context, id bson.ObjectID, a Audio) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "status", Value: bson.D{{Key: "$ne", Value: Done}}}},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "status", Value: Done}, {Key: "progress", Value: 100}, {Key: "audio", Value: a},
				{Key: "published", Value: true}, {Key: "updated_at", Value: s.now().UTC()}}},
			{Key: "$unset", Value: bson.D{{Key: "reason", Value: ""}, {Key: "retryable", Value: ""}}},
		})
	if err != nil {
		return false, fmt.Errorf("jobs: done %s: %w", id.Hex(), mongoErr(err))
	}
	return res.ModifiedCount > 0, nil
}

// SetFailed records why the job failed; only a queued or converting job
// fails (a done job stays done).
func (s *Store) SetFailed(ctx context.Context, id bson.ObjectID, reason string, retryable bool) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{Queued, Converting}}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: Failed}, {Key: "reason", Value: reason},
			{Key: "retryable", Value: retryable}, {Key: "published", Value: true}, {Key: "updated_at", Value: s.now().UTC()}}}})
	if err != nil {
		return false, fmt.Errorf("jobs: failed %s: %w", id.Hex(), mongoErr(err))
	}
	return res.ModifiedCount > 0, nil
}

// mongoErr marks errors of an unreachable database errs.Unavailable, so
// callers answer 503 rather than 500.
func mongoErr(err error) error {
	if err == nil {
		return nil
	}
	var ce mongo.CommandError
	if mongo.IsTimeout(err) || mongo.IsNetworkError(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, new(topology.ServerSelectionError)) || (errors.As(err, &ce) && ce.HasErrorLabel("RetryableWriteError")) {
		return errs.Wrap(err, errs.Unavailable, "the job database is unavailable")
	}
	return err
}
