package gridfs_test

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

func keys(p store.Page) []string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, e.Key())
	}
	return out
}

// New chunks have _ids derived from the file's id and their number, and
// deleting the file removes every one of them.
func TestDerivedChunkIDs(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	data := storetest.Data(3*testChunkSize+1, 31)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "a/x"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := bson.ObjectIDFromHex(f.ID)
	for n := range 4 {
		var c struct {
			N    int32  `bson:"n"`
			Data []byte `bson:"data"`
		}
		id := fmt.Sprintf("%s.%d", f.ID, n)
		if err := db.Collection("media.chunks").FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&c); err != nil || c.N != int32(n) {
			t.Fatalf("chunk %s: n=%d, %v", id, c.N, err)
		}
	}
	if err := b.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Collection("media.chunks").CountDocuments(ctx, bson.D{{Key: "files_id", Value: oid}}); err != nil || n != 0 {
		t.Fatalf("%d chunks left after delete, %v", n, err)
	}
	if n := leftovers(t, db); n != 0 {
		t.Fatalf("%d chunks left over", n)
	}
}

// Files written before the folder index existed (ObjectID chunk _ids, two
// revisions of one path) are indexed from the files collection on first
// use: listed (the newest revision), read, moved, replaced and deleted.
func TestFilesWrittenBeforeTheIndex(t *testing.T) {
	db := MustOpenDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	write := func(path, owner string, data []byte, at time.Time) bson.ObjectID {
		id := bson.NewObjectID()
		for n := 0; n*testChunkSize < len(data); n++ {
			if _, err := db.Collection("old.chunks").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "files_id", Value: id},
				{Key: "n", Value: int32(n)}, {Key: "data", Value: bson.Binary{Data: data[n*testChunkSize : min((n+1)*testChunkSize, len(data))]}}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Collection("old.files").InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "length", Value: int64(len(data))},
			{Key: "chunkSize", Value: int32(testChunkSize)}, {Key: "uploadDate", Value: at}, {Key: "filename", Value: path},
			{Key: "metadata", Value: bson.D{{Key: "owner", Value: owner}}}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	v2 := storetest.Data(2500, 32)
	write("d/f", "alice", []byte("first revision"), now.Add(-time.Hour))
	newID := write("d/f", "alice", v2, now)
	write("d/e/g", "bob", []byte("g"), now)
	write("top", "alice", []byte("t"), now)

	b := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize})
	if err := b.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := b.List(ctx, "old", store.ListOptions{})
	if err != nil || !slices.Equal(keys(p), []string{"d/e/g", "d/f", "top"}) || p.Entries[1].File.ID != newID.Hex() {
		t.Fatalf("list = %v, %v", keys(p), err)
	}
	if p, err := b.List(ctx, "old", store.ListOptions{Delimiter: "/", Owner: "bob"}); err != nil || !slices.Equal(keys(p), []string{"d/"}) {
		t.Fatalf("bob's folders = %v, %v", keys(p), err)
	}
	// Usage counts the newest revision of each path, from the rebuilt index.
	if u, err := b.Usage(ctx, "alice"); err != nil || u != int64(len(v2))+1 {
		t.Fatalf("alice's usage = %d, %v; want %d", u, err, len(v2)+1)
	}
	if u, err := b.Usage(ctx, "bob"); err != nil || u != 1 {
		t.Fatalf("bob's usage = %d, %v; want 1", u, err)
	}
	f, err := b.StatPath(ctx, "old", "d/f")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(ctx, f, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if _, err := b.Move(ctx, store.MoveRequest{Bucket: "old", From: "d/f", To: "moved/f", Replace: store.ReplaceAny}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "old", Path: "top", Owner: "alice"}, strings.NewReader("new top")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if p, err := b.List(ctx, "old", store.ListOptions{}); err != nil || !slices.Equal(keys(p), []string{"d/e/g", "top"}) || p.Entries[1].File.Size != 7 {
		t.Fatalf("list after move, replace and delete = %v, %v", keys(p), err)
	}
	// The first revision of d/f was never indexed: it is no one's now,
	// and its chunks stay with it (as with any GridFS writer's leftovers).
	if n := leftovers(t, db); n != 0 {
		t.Fatalf("%d chunks left over", n)
	}
}

// Writes into one folder from many goroutines (and two backends, as two
// replicas) all land in its index; a folder goes from an owner's listing
// once its last file of theirs is gone.
func TestConcurrentWritesToOneFolder(t *testing.T) {
	b1, db := newBackend(t)
	b2 := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize})
	ctx := testenv.Context(t, 60*time.Second)
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := b1
			if i%2 == 1 {
				b = b2
			}
			owner := "alice"
			if i == 0 {
				owner = "bob"
			}
			_, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: fmt.Sprintf("shared/sub/%02d", i), Owner: owner}, strings.NewReader("x"))
			errc <- err
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, err := b1.List(ctx, "media", store.ListOptions{Prefix: "shared/sub/", Delimiter: "/"})
	if err != nil || len(p.Entries) != 16 {
		t.Fatalf("list = %v, %v", keys(p), err)
	}
	if p, err := b2.List(ctx, "media", store.ListOptions{Delimiter: "/", Owner: "bob"}); err != nil || !slices.Equal(keys(p), []string{"shared/"}) {
		t.Fatalf("bob's folders = %v, %v", keys(p), err)
	}
	bobs, err := b1.StatPath(ctx, "media", "shared/sub/00")
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Delete(ctx, bobs.ID); err != nil {
		t.Fatal(err)
	}
	if p, err := b1.List(ctx, "media", store.ListOptions{Delimiter: "/", Owner: "bob"}); err != nil || len(p.Entries) != 0 {
		t.Fatalf("bob's folders after his last file went = %v, %v", keys(p), err)
	}
	if p, err := b1.List(ctx, "media", store.ListOptions{Delimiter: "/", Owner: "alice"}); err != nil || !slices.Equal(keys(p), []string{"shared/"}) {
		t.Fatalf("alice's folders = %v, %v", keys(p), err)
	}
}

// Listing a bucket that does not exist finds nothing and makes no bucket.
func TestListMissingBucket(t *testing.T) {
	b, _ := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	if p, err := b.List(ctx, "nothing", store.ListOptions{Delimiter: "/"}); err != nil || len(p.Entries) != 0 {
		t.Fatalf("list = %v, %v", keys(p), err)
	}
	if ok, err := b.HasBucket(ctx, "nothing"); err != nil || ok {
		t.Fatalf("has bucket = %v, %v", ok, err)
	}
}

// An index entry whose files document is gone (a delete cut short) is
// dropped the first time its path is looked up.
func TestStaleEntryIsDropped(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "d/gone"}, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := bson.ObjectIDFromHex(f.ID)
	if _, err := db.Collection("media.files").DeleteOne(ctx, bson.D{{Key: "_id", Value: oid}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.StatPath(ctx, "media", "d/gone"); err == nil {
		t.Fatal("stat of a file whose document is gone succeeded")
	}
	if p, err := b.List(ctx, "media", store.ListOptions{}); err != nil || len(p.Entries) != 0 {
		t.Fatalf("list = %v, %v", keys(p), err)
	}
}

// An Idempotency-Key is found by one lookup of its record: the file of the
// key, not another owner's or another key's; nothing once the file is
// deleted; and the keys of files written before the records existed (an
// index of version 1) after the index is rebuilt.
func TestIdempotencyRecords(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "u/a.mp3", Owner: "alice", IdempotencyKey: "mp3:1"}, strings.NewReader("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.FindIdempotent(ctx, "media", "alice", "mp3:1"); err != nil || got.ID != f.ID || got.Path != "u/a.mp3" {
		t.Fatalf("FindIdempotent = %+v, %v", got, err)
	}
	for _, miss := range [][2]string{{"bob", "mp3:1"}, {"alice", "mp3:2"}} {
		if _, err := b.FindIdempotent(ctx, "media", miss[0], miss[1]); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("FindIdempotent(%s, %s) = %v, want not found", miss[0], miss[1], err)
		}
	}
	if err := b.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FindIdempotent(ctx, "media", "alice", "mp3:1"); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("key of a deleted file: %v, want not found", err)
	}

	// A bucket indexed by the version before: its marker says 1 and no
	// record exists.
	old, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "u/b.mp3", Owner: "alice", IdempotencyKey: "mp3:3"}, strings.NewReader("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("media.folders").DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$regex", Value: "^/idempotency/"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("media.folders").UpdateOne(ctx, bson.D{{Key: "_id", Value: "/index"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	restarted := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize})
	if got, err := restarted.FindIdempotent(ctx, "media", "alice", "mp3:3"); err != nil || got.ID != old.ID {
		t.Fatalf("key of a file indexed by version 1 = %+v, %v", got, err)
	}
}

// A path the index does not hold is looked for among the files another
// GridFS writer added at most once per ReconcileEvery: the first miss
// indexes what the driver wrote; a file it writes right after shows by id
// at once, by path only at the next reconcile.
func TestReconcileIsBounded(t *testing.T) {
	db := MustOpenDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	b := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize, ReconcileEvery: time.Hour})
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "ours"}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	driver := db.GridFSBucket(options.GridFSBucket().SetName("media"))
	if _, err := driver.UploadFromStream(ctx, "d/first", strings.NewReader("1")); err != nil {
		t.Fatal(err)
	}
	if f, err := b.StatPath(ctx, "media", "d/first"); err != nil || f.Size != 1 {
		t.Fatalf("first foreign file by path = %+v, %v", f, err)
	}
	id, err := driver.UploadFromStream(ctx, "d/second", strings.NewReader("22"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.StatPath(ctx, "media", "d/second"); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("second foreign file by path within the hour: %v, want not found (no second scan)", err)
	}
	if f, err := b.Stat(ctx, id.Hex()); err != nil || f.Path != "d/second" {
		t.Fatalf("second foreign file by id = %+v, %v", f, err)
	}
	later := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize, ReconcileEvery: time.Hour})
	if f, err := later.StatPath(ctx, "media", "d/second"); err != nil || f.ID != id.Hex() {
		t.Fatalf("second foreign file at the next reconcile = %+v, %v", f, err)
	}
	// A reconcile after the first looks at the files uploaded since.
	often := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize, ReconcileEvery: time.Nanosecond})
	if _, err := often.StatPath(ctx, "media", "d/none"); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("a path no one wrote: %v", err)
	}
	if _, err := driver.UploadFromStream(ctx, "e/third", strings.NewReader("333")); err != nil {
		t.Fatal(err)
	}
	if f, err := often.StatPath(ctx, "media", "e/third"); err != nil || f.Size != 3 {
		t.Fatalf("third foreign file at a later reconcile = %+v, %v", f, err)
	}
}

// Folder documents are stored packed (one binary field); one written
// unpacked, as before, still reads, and is packed when next written.
func TestFolderDocumentsArePacked(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "p/x", Owner: "alice"}, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	folders := db.Collection("media.folders")
	var stored bson.M
	if err := folders.FindOne(ctx, bson.D{{Key: "_id", Value: "p/"}}).Decode(&stored); err != nil {
		t.Fatal(err)
	}
	if _, packed := stored["packed"]; !packed || stored["files"] != nil {
		t.Fatalf("folder p/ stored as %v, want packed", stored)
	}
	oid, _ := bson.ObjectIDFromHex(f.ID)
	unpacked := bson.D{{Key: "_id", Value: "p/"}, {Key: "files", Value: bson.A{bson.D{{Key: "name", Value: "x"}, {Key: "id", Value: oid},
		{Key: "owner", Value: "alice"}, {Key: "size", Value: int64(1)}, {Key: "created", Value: f.Created}}}}}
	if _, err := folders.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "p/"}}, unpacked); err != nil {
		t.Fatal(err)
	}
	if got, err := b.StatPath(ctx, "media", "p/x"); err != nil || got.ID != f.ID {
		t.Fatalf("file of an unpacked folder = %+v, %v", got, err)
	}
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "p/y", Owner: "alice"}, strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	stored = nil
	if err := folders.FindOne(ctx, bson.D{{Key: "_id", Value: "p/"}}).Decode(&stored); err != nil {
		t.Fatal(err)
	}
	if _, packed := stored["packed"]; !packed || stored["files"] != nil {
		t.Fatalf("folder p/ after a write = %v, want packed", stored)
	}
	if p, err := b.List(ctx, "media", store.ListOptions{Prefix: "p/"}); err != nil || !slices.Equal(keys(p), []string{"p/x", "p/y"}) {
		t.Fatalf("list = %v, %v", keys(p), err)
	}
}
