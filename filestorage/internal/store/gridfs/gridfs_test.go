package gridfs_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/audiomill/audiomill/filestorage/internal/store/filecache"
	"io"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

// testChunkSize is small so that every test crosses chunk boundaries.
const testChunkSize = 1000

var dbSeq atomic.Int64

// MustOpenDB returns a fresh database, dropped when tb ends.
func MustOpenDB(tb testing.TB) *mongo.Database {
	tb.Helper()
	client, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(tb), Timeout: 30 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	name := fmt.Sprintf("fs_test_%d_%d", time.Now().UnixNano()%1e9, dbSeq.Add(1))
	db := client.Database(name)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = client.Disconnect(ctx)
	})
	return db
}

func newBackend(tb testing.TB) (*gridfs.Backend, *mongo.Database) {
	tb.Helper()
	db := MustOpenDB(tb)
	b := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize})
	if err := b.EnsureIndexes(testenv.Context(tb, 30*time.Second)); err != nil {
		tb.Fatal(err)
	}
	return b, db
}

// leftovers counts chunks that belong to no file and no upload.
func leftovers(tb testing.TB, db *mongo.Database) int {
	tb.Helper()
	ctx := testenv.Context(tb, 30*time.Second)
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		tb.Fatal(err)
	}
	owned := map[bson.ObjectID]bool{}
	collect := func(coll string) {
		cur, err := db.Collection(coll).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			tb.Fatal(err)
		}
		var docs []struct {
			ID bson.ObjectID `bson:"_id"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			tb.Fatal(err)
		}
		for _, d := range docs {
			owned[d.ID] = true
		}
	}
	collect("filestorage_uploads")
	for _, n := range names {
		if strings.HasSuffix(n, ".files") {
			collect(n)
		}
	}
	count := 0
	for _, n := range names {
		if !strings.HasSuffix(n, ".chunks") {
			continue
		}
		cur, err := db.Collection(n).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "files_id", Value: 1}}))
		if err != nil {
			tb.Fatal(err)
		}
		var docs []struct {
			FilesID bson.ObjectID `bson:"files_id"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			tb.Fatal(err)
		}
		for _, d := range docs {
			if !owned[d.FilesID] {
				count++
			}
		}
	}
	return count
}

func TestBackendSuite(t *testing.T) {
	dbs := map[store.Backend]*mongo.Database{}
	storetest.Run(t, storetest.Harness{
		New: func(tb testing.TB) store.Backend {
			b, db := newBackend(tb)
			dbs[b] = db
			return b
		},
		Leftovers: func(tb testing.TB, b store.Backend) int { return leftovers(tb, dbs[b]) },
		Reopen: func(tb testing.TB, b store.Backend) store.Backend {
			nb := gridfs.New(dbs[b], gridfs.Options{ChunkSize: testChunkSize})
			dbs[nb] = dbs[b]
			return nb
		},
	})
}

// What the service writes, the driver's own GridFS API reads, and the other
// way round.
func TestInteropWithDriverGridFS(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	data := storetest.Data(12_345, 9)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "ours.bin", Owner: "alice"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	bucket := db.GridFSBucket(options.GridFSBucket().SetName("media"))
	var buf bytes.Buffer
	if _, err := bucket.DownloadToStreamByName(ctx, "ours.bin", &buf); err != nil {
		t.Fatalf("driver download: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), data) {
		t.Fatal("driver read different bytes")
	}
	oid, _ := bson.ObjectIDFromHex(f.ID)
	if _, err := bucket.OpenDownloadStream(ctx, oid); err != nil {
		t.Fatalf("driver open by id: %v", err)
	}

	theirs := storetest.Data(7_777, 10)
	if _, err := bucket.UploadFromStream(ctx, "dir/theirs.bin", bytes.NewReader(theirs), options.GridFSUpload().SetChunkSizeBytes(4096)); err != nil {
		t.Fatal(err)
	}
	got, err := b.StatPath(ctx, "media", "dir/theirs.bin")
	if err != nil || got.Size != int64(len(theirs)) {
		t.Fatalf("stat theirs = %+v, %v", got, err)
	}
	rc, err := b.Open(ctx, got, 5000, 100)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(rc)
	if !bytes.Equal(part, theirs[5000:5100]) {
		t.Fatal("range of a driver-written file differs")
	}
	if byID, err := b.Stat(ctx, got.ID); err != nil || byID.Path != "dir/theirs.bin" {
		t.Fatalf("stat theirs by id = %+v, %v", byID, err)
	}
}

// A range read starts at the chunk that holds the range: the chunks before
// it are never read (deleting them does not matter).
func TestRangeSkipsEarlierChunks(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	data := storetest.Data(10*testChunkSize, 11)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "r"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := bson.ObjectIDFromHex(f.ID)
	if _, err := db.Collection("media.chunks").DeleteMany(ctx, bson.D{{Key: "files_id", Value: oid}, {Key: "n", Value: bson.D{{Key: "$lt", Value: 7}}}}); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(ctx, f, 7*testChunkSize+10, 2000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data[7*testChunkSize+10:7*testChunkSize+2010]) {
		t.Fatalf("range read = %d bytes, %v", len(got), err)
	}
	rc, _ = b.Open(ctx, f, 0, 10)
	if _, err := io.ReadAll(rc); err == nil {
		t.Fatal("reading a missing chunk succeeded")
	}
}

// The spec's indexes exist once a bucket is used.
func TestIndexes(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "x"}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for coll, want := range map[string]string{"media.files": "filename_1_uploadDate_1", "media.chunks": "files_id_1_n_1"} {
		specs, err := db.Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range specs {
			if s.Name == want && (coll == "media.files" || s.Unique != nil && *s.Unique) {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s has no index %s: %+v", coll, want, specs)
		}
	}
}

// Chunks written out of order (some other writer) still read back right.
func TestOutOfOrderChunks(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 30*time.Second)
	data := storetest.Data(5*testChunkSize+10, 12)
	id := bson.NewObjectID()
	for n := 5; n >= 0; n-- {
		end := min((n+1)*testChunkSize, len(data))
		if _, err := db.Collection("odd.chunks").InsertOne(ctx, bson.D{{Key: "files_id", Value: id}, {Key: "n", Value: int32(n)}, {Key: "data", Value: data[n*testChunkSize : end]}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Collection("odd.files").InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "length", Value: int64(len(data))},
		{Key: "chunkSize", Value: int32(testChunkSize)}, {Key: "uploadDate", Value: time.Now()}, {Key: "filename", Value: "odd"}}); err != nil {
		t.Fatal(err)
	}
	f, err := b.StatPath(ctx, "odd", "odd")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{0, -1}, {1500, 2000}} {
		rc, err := b.Open(ctx, f, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		end := int64(len(data))
		if r[1] >= 0 {
			end = r[0] + r[1]
		}
		if err != nil || !bytes.Equal(got, data[r[0]:end]) {
			t.Fatalf("read %v: %d bytes, %v", r, len(got), err)
		}
		rc.Close()
	}
}

// stallingReader yields n bytes, then blocks until release is closed and
// fails.
type stallingReader struct {
	data    []byte
	stalled chan struct{}
	release chan struct{}
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	close(r.stalled)
	<-r.release
	return 0, io.ErrUnexpectedEOF
}

// The database goes away in the middle of a write: the chunks already
// written cannot be dropped then, and are invisible; the write's journal
// stays, and the expired-uploads sweep drops them once the database is back.
func TestWriteCutByTheDatabaseIsSweptLater(t *testing.T) {
	direct := MustOpenDB(t)
	u, err := url.Parse(testenv.MongoURI(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, u.Host)
	client, err := mongoconn.Connect(mongoconn.Config{URI: "mongodb://" + proxy.Addr + "/?directConnection=true",
		ServerSelectionTimeout: 500 * time.Millisecond, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	b := gridfs.New(client.Database(direct.Name()), gridfs.Options{ChunkSize: testChunkSize})
	ctx := testenv.Context(t, 60*time.Second)

	// More than two insert batches before the stall, so some are in the database.
	r := &stallingReader{data: storetest.Data(10<<20, 3), stalled: make(chan struct{}), release: make(chan struct{})}
	putErr := make(chan error, 1)
	go func() {
		_, err := b.Put(ctx, store.PutRequest{Bucket: "cut", Path: "half.bin", Owner: "alice"}, r)
		putErr <- err
	}()
	<-r.stalled
	chunks := direct.Collection("cut.chunks")
	testenv.Eventually(t, 10*time.Second, func() bool {
		n, _ := chunks.CountDocuments(ctx, bson.D{})
		return n > 0
	}, "no chunk was written before the stall")
	proxy.Cut()
	close(r.release)
	if err := <-putErr; err == nil {
		t.Fatal("Put succeeded with its body cut")
	}

	// Nothing visible; the chunks are still there, journalled.
	if n, _ := direct.Collection("cut.files").CountDocuments(ctx, bson.D{}); n != 0 {
		t.Fatalf("%d files visible after a failed write", n)
	}
	if n, _ := chunks.CountDocuments(ctx, bson.D{}); n == 0 {
		t.Fatal("the chunks were dropped: the database was supposed to be unreachable")
	}
	sweeper := gridfs.New(direct, gridfs.Options{ChunkSize: testChunkSize})
	ids, err := sweeper.ExpiredUploads(ctx, time.Now().Add(48*time.Hour))
	if err != nil || len(ids) != 1 {
		t.Fatalf("expired journals = %v, %v; want the cut write's", ids, err)
	}
	_, err = sweeper.GetUpload(ctx, ids[0])
	if errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("a write's journal is visible as a resumable upload: %v", err)
	}
	if err := sweeper.DeleteUpload(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if n, _ := chunks.CountDocuments(ctx, bson.D{}); n != 0 {
		t.Fatalf("%d chunks left after the sweep", n)
	}
	if n := leftovers(t, direct); n != 0 {
		t.Fatalf("%d leftovers", n)
	}
}

// An upload holds buffers for what is coming, not 2 × 4 MiB whatever its
// size: a 0.5 MB file of unknown size allocates less than 6 MiB in all (the
// two 4 MiB buffers alone were 8), and one whose size is told less still.
func TestSmallUploadsHoldLittle(t *testing.T) {
	ctx := testenv.Context(t, 30*time.Second)
	b := gridfs.New(MustOpenDB(t), gridfs.Options{})
	data := storetest.Data(500_000, 41)
	put := func(path string, hint int64) uint64 {
		// An io.Reader that is not a bytes.Reader: nothing tells its size.
		body := io.MultiReader(bytes.NewReader(data))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: path, SizeHint: hint}, body); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	put("warm-up", 0) // the bucket's indexes, the connection
	unknown, told := put("unknown", 0), put("told", int64(len(data)))
	t.Logf("allocated %d KiB (size unknown), %d KiB (size told)", unknown>>10, told>>10)
	if unknown >= 6<<20 || told >= 6<<20 {
		t.Fatalf("allocated %d and %d bytes for a 500 kB upload", unknown, told)
	}
}

// With a cache, a file this backend wrote reads from its local copy (the
// chunks deleted from the database behind its back do not matter), ranges
// included; a failed upload still fails; a deleted file's copy goes.
func TestCacheServesWhatItWrote(t *testing.T) {
	ctx := testenv.Context(t, 30*time.Second)
	db := MustOpenDB(t)
	cache, err := filecache.New(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	b := gridfs.New(db, gridfs.Options{ChunkSize: testChunkSize, Cache: cache})
	data := storetest.Data(5_500, 43)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "v"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := bson.ObjectIDFromHex(f.ID)
	if _, err := db.Collection("media.chunks").DeleteMany(ctx, bson.D{{Key: "files_id", Value: oid}}); err != nil {
		t.Fatal(err)
	}
	readRanges(t, b, f, data, [][2]int64{{0, -1}, {1000, 2000}, {5_499, 1}})

	bad := make([]byte, 32)
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "w", SHA256: bad}, bytes.NewReader(data)); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("upload with a wrong digest: %v", err)
	}
	if err := b.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := cache.Open(f.ID, f.Size); ok {
		t.Fatal("the copy of a deleted file is still there")
	}
}

// readRanges opens each range {offset, length (-1: to the end)} of f and
// checks that it reads as the same range of data.
func readRanges(t *testing.T, b *gridfs.Backend, f store.File, data []byte, ranges [][2]int64) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	for _, r := range ranges {
		rc, err := b.Open(ctx, f, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		end := int64(len(data))
		if r[1] >= 0 {
			end = r[0] + r[1]
		}
		if err != nil || !bytes.Equal(got, data[r[0]:end]) {
			t.Fatalf("range %v: %d bytes, %v", r, len(got), err)
		}
	}
}
