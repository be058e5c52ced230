package mongomigrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/gateway/internal/mongomigrate"
	"github.com/audiomill/audiomill/platform/testenv"
)

// oldStore writes jobs the way the gateway's MongoDB store did before the
// move (its Create, MarkPublished, SetProgress, SetDone and SetFailed,
// statement for statement).
type oldStore struct{ coll *mongo.Collection }

func (s oldStore) create(t *testing.T, owner, contentType string) bson.ObjectID {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := bson.NewObjectID()
	doc := bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}, {Key: "owner_email", Value: owner + "@example.com"},
		{Key: "locale", Value: "de"}, {Key: "status", Value: "queued"}, {Key: "progress", Value: 0},
		{Key: "video", Value: bson.D{{Key: "file_id", Value: "video-" + id.Hex()}, {Key: "name", Value: "clip.mp4"},
			{Key: "content_type", Value: contentType}, {Key: "size", Value: int64(1234)}}},
		{Key: "created_at", Value: now}, {Key: "updated_at", Value: now}, {Key: "request_id", Value: "req-" + id.Hex()},
		{Key: "published", Value: false}, {Key: "lease_until", Value: now.Add(10 * time.Second)}}
	if _, err := s.coll.InsertOne(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	return id
}

func (s oldStore) update(t *testing.T, id bson.ObjectID, update bson.D) {
	t.Helper()
	if _, err := s.coll.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}}, update); err != nil {
		t.Fatal(err)
	}
}

func (s oldStore) markPublished(t *testing.T, id bson.ObjectID) {
	s.update(t, id, bson.D{{Key: "$set", Value: bson.D{{Key: "published", Value: true}}}})
}

func (s oldStore) setProgress(t *testing.T, id bson.ObjectID, pct int) {
	s.update(t, id, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "converting"}, {Key: "progress", Value: pct},
		{Key: "published", Value: true}, {Key: "updated_at", Value: time.Now().UTC()}}}})
}

func (s oldStore) setDone(t *testing.T, id bson.ObjectID) {
	s.update(t, id, bson.D{
		{Key: "$set", Value: bson.D{{Key: "status", Value: "done"}, {Key: "progress", Value: 100},
			{Key: "audio", Value: bson.D{{Key: "file_id", Value: "mp3-" + id.Hex()}, {Key: "size", Value: int64(999)},
				{Key: "duration_seconds", Value: 37.8}, {Key: "bitrate_kbps", Value: 128}}},
			{Key: "published", Value: true}, {Key: "updated_at", Value: time.Now().UTC()}}},
		{Key: "$unset", Value: bson.D{{Key: "reason", Value: ""}, {Key: "retryable", Value: ""}}},
	})
}

func (s oldStore) setFailed(t *testing.T, id bson.ObjectID, reason string) {
	s.update(t, id, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "failed"}, {Key: "reason", Value: reason},
		{Key: "retryable", Value: true}, {Key: "published", Value: true}, {Key: "updated_at", Value: time.Now().UTC()}}}})
}

// oldDatabase returns a MongoDB database of the test's own (FerretDB
// locally), dropped at the end.
func oldDatabase(t *testing.T) (oldStore, string, string) {
	t.Helper()
	uri := testenv.MongoURI(t)
	mc, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("audiomill_gwtest_migrate_%d", time.Now().UnixNano())
	db := mc.Database(name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = mc.Disconnect(ctx)
	})
	return oldStore{coll: db.Collection(mongomigrate.Collection)}, uri, name
}

func run(t *testing.T, env map[string]string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := mongomigrate.Run(testenv.Context(t, 2*time.Minute), func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestMigrateFromMongo copies a database written by the old code: every
// status, published and not, an event the contract refuses; twice, the
// second time copying nothing.
func TestMigrateFromMongo(t *testing.T) {
	old, uri, name := oldDatabase(t)
	pool, store, dbURL := jobstest.Open(t)
	ctx := testenv.Context(t, 2*time.Minute)

	queuedUnpublished := old.create(t, "alice", "video/mp4")
	queuedPublished := old.create(t, "alice", "video/mp4")
	old.markPublished(t, queuedPublished)
	converting := old.create(t, "alice", "video/mp4")
	old.markPublished(t, converting)
	old.setProgress(t, converting, 40)
	done := old.create(t, "bob", "video/webm")
	old.markPublished(t, done)
	old.setDone(t, done)
	failed := old.create(t, "bob", "video/mp4")
	old.setFailed(t, failed, "not a video")
	unpublishable := old.create(t, "bob", strings.Repeat("v", 200))

	env := map[string]string{"MONGO_URI": uri, "MONGO_DATABASE": name, "DATABASE_URL": dbURL}
	code, out, errOut := run(t, env)
	if code != 0 || !strings.Contains(out, "read 6 jobs") || !strings.Contains(out, "copied 6 (2 unpublished") ||
		!strings.Contains(out, "0 already") || !strings.Contains(out, "0 failed") {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errOut)
	}
	t.Log(strings.TrimSpace(out))

	get := func(owner string, id bson.ObjectID) jobs.Job {
		t.Helper()
		j, err := store.Get(ctx, owner, jobs.ID(id))
		if err != nil {
			t.Fatalf("job %s: %v", id.Hex(), err)
		}
		return j
	}
	j := get("alice", queuedUnpublished)
	if j.Status != jobs.Queued || j.OwnerEmail != "alice@example.com" || j.Locale != "de" || j.RequestID != "req-"+queuedUnpublished.Hex() ||
		j.Video != (jobs.Video{FileID: "video-" + queuedUnpublished.Hex(), Name: "clip.mp4", ContentType: "video/mp4", Size: 1234}) ||
		j.CreatedAt.IsZero() || j.ID.Hex() != queuedUnpublished.Hex() {
		t.Errorf("queued job %+v", j)
	}
	if j := get("alice", converting); j.Status != jobs.Converting || j.Progress != 40 {
		t.Errorf("converting job %+v", j)
	}
	if j := get("bob", done); j.Status != jobs.Done || j.Progress != 100 || j.Audio == nil ||
		*j.Audio != (jobs.Audio{FileID: "mp3-" + done.Hex(), Size: 999, DurationSeconds: 37.8, BitrateKbps: 128}) {
		t.Errorf("done job %+v", j)
	}
	if j, err := store.ByAudio(ctx, "bob", "mp3-"+done.Hex()); err != nil || j.ID.Hex() != done.Hex() {
		t.Errorf("done job by its MP3: %v", err)
	}
	if j := get("bob", failed); j.Status != jobs.Failed || j.Reason != "not a video" || !j.Retryable {
		t.Errorf("failed job %+v", j)
	}

	// The unpublished jobs, and only they, have an outbox row the relay
	// may claim at once, carrying their video.uploaded.
	events := outbox(t, pool)
	if len(events) != 2 || events[queuedUnpublished.Hex()] == nil || events[unpublishable.Hex()] == nil {
		t.Fatalf("outbox %v; want the two unpublished jobs", events)
	}
	env0 := events[queuedUnpublished.Hex()]
	if env0["type"] != "video.uploaded" || env0["job_id"] != queuedUnpublished.Hex() || env0["correlation_id"] != "req-"+queuedUnpublished.Hex() {
		t.Errorf("envelope %v", env0)
	}
	payload, _ := env0["payload"].(map[string]any)
	if payload["video_id"] != "video-"+queuedUnpublished.Hex() || payload["owner_email"] != "alice@example.com" || payload["size"] != float64(1234) {
		t.Errorf("payload %v", payload)
	}
	claimed, err := store.Claim(ctx, 10, time.Minute)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimable events %d (%v); want 2", len(claimed), err)
	}
	if err := store.Release(ctx, []int64{claimed[0].ID, claimed[1].ID}, 0); err != nil {
		t.Fatal(err)
	}

	// Again: nothing copied twice, nothing changed.
	code, out, errOut = run(t, env)
	if code != 0 || !strings.Contains(out, "read 6 jobs") || !strings.Contains(out, "copied 0 (0 unpublished") ||
		!strings.Contains(out, "6 already") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	if again := outbox(t, pool); len(again) != 2 {
		t.Errorf("outbox after the second run: %d rows", len(again))
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from jobs").Scan(&n); err != nil || n != 6 {
		t.Errorf("%d jobs after the second run (%v)", n, err)
	}

	t.Run("ErrUnknownStatus", func(t *testing.T) {
		old, uri, name := oldDatabase(t)
		_, _, dbURL := jobstest.Open(t)
		good := old.create(t, "carol", "video/mp4")
		weird := old.create(t, "carol", "video/mp4")
		old.update(t, weird, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "exploded"}}}})
		code, out, errOut := run(t, map[string]string{"MONGO_URI": uri, "MONGO_DATABASE": name, "DATABASE_URL": dbURL})
		if code != 1 || !strings.Contains(out, "copied 1") || !strings.Contains(out, "1 failed") ||
			!strings.Contains(errOut, weird.Hex()) || !strings.Contains(errOut, "exploded") || strings.Contains(errOut, good.Hex()) {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("ErrBadDatabaseURL", func(t *testing.T) {
		code, _, errOut := run(t, map[string]string{"MONGO_URI": uri, "DATABASE_URL": "mysql://x"})
		if code != 2 || !strings.Contains(errOut, "DATABASE_URL") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}

// outbox returns the unpublished events' envelopes by job id.
func outbox(t *testing.T, pool *pgxpool.Pool) map[string]map[string]any {
	t.Helper()
	rows, err := pool.Query(testenv.Context(t, 10*time.Second),
		"select job_id, envelope from outbox where published_at is null and claimed_until <= now()")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]map[string]any{}
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		var env map[string]any
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatal(err)
		}
		m[id] = env
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
