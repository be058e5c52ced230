package gridfs_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// commands counts the commands a client sends, by name and collection.
type commands struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commands) reset() {
	c.mu.Lock()
	c.n = map[string]int{}
	c.mu.Unlock()
}

// count returns how many commands named name were sent (on collections
// whose name has the suffix in, when in is set).
func (c *commands) count(name, in string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for k, n := range c.n {
		cmd, coll, _ := strings.Cut(k, " ")
		if cmd == name && strings.HasSuffix(coll, in) {
			total += n
		}
	}
	return total
}

func (c *commands) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.n)
}

// monitoredDB opens db's database again through a client that counts its
// commands.
func monitoredDB(t *testing.T, db *mongo.Database) (*mongo.Database, *commands) {
	t.Helper()
	seen := &commands{n: map[string]int{}}
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		coll := ""
		if v, err := e.Command.LookupErr(e.CommandName); err == nil {
			coll, _ = v.StringValueOK()
		}
		seen.mu.Lock()
		seen.n[e.CommandName+" "+coll]++
		seen.mu.Unlock()
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)).SetMonitor(monitor).SetTimeout(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database(db.Name()), seen
}

func putIn(t *testing.T, b store.Backend, bucket, path string) store.File {
	t.Helper()
	f, err := b.Put(testenv.Context(t, 30*time.Second), store.PutRequest{Bucket: bucket, Path: path, Owner: "alice"}, strings.NewReader(path))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A file is found by id with one query of the id index and one of its
// bucket, however many buckets there are; a missing id costs one query.
func TestStatByIDAsksTheIDIndex(t *testing.T) {
	_, db := newBackend(t)
	mdb, seen := monitoredDB(t, db)
	b := gridfs.New(mdb, gridfs.Options{ChunkSize: testChunkSize})
	ctx := testenv.Context(t, 60*time.Second)
	var last store.File
	for i := range 8 {
		last = putIn(t, b, fmt.Sprintf("bucket-%d", i), "f")
	}
	// The first miss may look through every bucket (a file another
	// writer added); the next ones within ReconcileEvery do not.
	if _, err := b.Stat(ctx, bson.NewObjectID().Hex()); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("stat of a missing id: %v", err)
	}

	seen.reset()
	f, err := b.Stat(ctx, last.ID)
	if err != nil || f.Bucket != "bucket-7" || f.Path != "f" {
		t.Fatalf("stat = %+v, %v", f, err)
	}
	if n, lc := seen.count("find", ""), seen.count("listCollections", ""); n != 2 || lc != 0 {
		t.Fatalf("stat by id sent %d finds and %d listCollections (%s), want 2 and 0", n, lc, seen)
	}
	seen.reset()
	if _, err := b.Stat(ctx, bson.NewObjectID().Hex()); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("stat of a missing id: %v", err)
	}
	if n, lc := seen.count("find", ""), seen.count("listCollections", ""); n != 1 || lc != 0 {
		t.Fatalf("stat of a missing id sent %d finds and %d listCollections (%s), want 1 and 0", n, lc, seen)
	}

	// A delete removes the record; a replaced revision's goes too.
	if err := b.Delete(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	first := putIn(t, b, "bucket-0", "g")
	putIn(t, b, "bucket-0", "g")
	for _, id := range []string{last.ID, first.ID} {
		oid, _ := bson.ObjectIDFromHex(id)
		if n, err := db.Collection("filestorage_ids").CountDocuments(ctx, bson.D{{Key: "_id", Value: oid}}); err != nil || n != 0 {
			t.Fatalf("the id index still holds %s (%d, %v)", id, n, err)
		}
		if _, err := b.Stat(ctx, id); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("stat of a deleted file: %v", err)
		}
	}
}

// Files written before the id index existed are indexed once, at start
// (EnsureIDIndex) or at the first lookup; building it again changes
// nothing.
func TestIDIndexOfOlderFiles(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 60*time.Second)
	var files []store.File
	for i := range 3 {
		files = append(files, putIn(t, b, fmt.Sprintf("old-%d", i), "a"), putIn(t, b, fmt.Sprintf("old-%d", i), "b/c"))
	}
	ids := db.Collection("filestorage_ids")
	if err := ids.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	// A new process, which never looks through every bucket itself: only
	// the index can find the files.
	for round, ensure := range []bool{false, true, false} {
		if round > 0 {
			if _, err := ids.DeleteOne(ctx, bson.D{{Key: "_id", Value: "/built"}}); err != nil {
				t.Fatal(err)
			}
		}
		nb := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize, ReconcileEvery: -1})
		if ensure {
			if err := nb.EnsureIDIndex(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			got, err := nb.Stat(ctx, f.ID)
			if err != nil || got.Bucket != f.Bucket || got.Path != f.Path {
				t.Fatalf("round %d: stat %s = %+v, %v", round, f.ID, got, err)
			}
		}
		if n, err := ids.CountDocuments(ctx, bson.D{}); err != nil || n != int64(len(files))+1 {
			t.Fatalf("round %d: the id index holds %d documents (%v), want %d records and its marker", round, n, err, len(files))
		}
	}
}
