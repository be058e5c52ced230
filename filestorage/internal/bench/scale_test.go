package bench_test

// What a GridFS download, a folder's listing and a move cost as the bucket
// around them grows. Each figure is printed beside its bound from the same
// run: the same operation in a small bucket, measured alternately with it.
// Seeding happens once per
// sub-benchmark (b.Loop runs its setup once) and every repetition reuses it.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

const (
	scaleFileSize  = 64 << 20 // the downloaded file
	scaleOtherSize = 1 << 30  // the other files of the large bucket
	scaleOtherFile = 64 << 20
	// Measurements of each kind, alternating small and large; the medians
	// are reported. Listings take milliseconds, so a moment of other load
	// on the machine moves one of them: they are repeated more.
	downloadReps = 7
	listReps     = 15
	listBatch    = 10
	folderFiles  = 10
	smallBucket  = 100    // files in the small listing bucket
	largeBucket  = 10_000 // files in the large listing bucket
)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// scaleDB returns a fresh database and a backend on it, dropped at the end.
func scaleDB(b *testing.B, name string) (*mongo.Database, *gridfs.Backend) {
	b.Helper()
	c, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(b), Timeout: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	db := c.Database(fmt.Sprintf("fs_bench_%s_%d", name, time.Now().UnixNano()))
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_ = db.Drop(ctx)
		_ = c.Disconnect(ctx)
	})
	be := gridfs.New(db, gridfs.Options{})
	if err := be.EnsureIndexes(testenv.Context(b, time.Minute)); err != nil {
		b.Fatal(err)
	}
	return db, be
}

func put(ctx context.Context, b *testing.B, be *gridfs.Backend, bucket, path string, size int64) store.File {
	b.Helper()
	f, err := be.Put(ctx, store.PutRequest{Bucket: bucket, Path: path, Owner: "bench"}, newPattern(size))
	if err != nil {
		b.Fatalf("seed %s/%s: %v", bucket, path, err)
	}
	return f
}

func download(ctx context.Context, b *testing.B, be *gridfs.Backend, f store.File) float64 {
	b.Helper()
	start := time.Now()
	r, err := be.Open(ctx, f, 0, -1)
	if err != nil {
		b.Fatal(err)
	}
	n, err := copyMiB(io.Discard, r)
	r.Close()
	if err != nil || n != f.Size {
		b.Fatalf("download %s: %d bytes, %v", f.Path, n, err)
	}
	return mbps(n, time.Since(start))
}

// BenchmarkGridFSScale/download: a 64 MiB file from a bucket that holds
// only it (the bound) and from one that also holds 1 GiB of other files.
// BenchmarkGridFSScale/list: a 10-file folder listed (and one of its files
// moved and moved back) in a 100-file bucket (the bound) and in a
// 10,000-file bucket.
func BenchmarkGridFSScale(b *testing.B) {
	b.Run("download", func(b *testing.B) {
		_, be := scaleDB(b, "dl")
		ctx := testenv.Context(b, 30*time.Minute)
		start := time.Now()
		small := put(ctx, b, be, "small", "f.bin", scaleFileSize)
		var large store.File
		for i := range scaleOtherSize / scaleOtherFile {
			if i == scaleOtherSize/scaleOtherFile/2 {
				large = put(ctx, b, be, "large", "f.bin", scaleFileSize)
			}
			put(ctx, b, be, "large", fmt.Sprintf("other/%02d.bin", i), scaleOtherFile)
		}
		b.Logf("seeded 64 MiB + 1 GiB in %.1f s", time.Since(start).Seconds())
		for b.Loop() {
			var s, l []float64
			for range downloadReps {
				s = append(s, download(ctx, b, be, small))
				l = append(l, download(ctx, b, be, large))
			}
			ms, ml := median(s), median(l)
			b.ReportMetric(ms, "alone-MB/s")
			b.ReportMetric(ml, "beside-1GiB-MB/s")
			b.ReportMetric(100*ml/ms, "%-of-alone")
			b.Logf("64 MiB download, medians of %d: alone %.0f MB/s, beside 1 GiB of other files %.0f MB/s = %.0f%% (target >= 80%%); alone %.0f, beside %.0f",
				downloadReps, ms, ml, 100*ml/ms, s, l)
		}
	})
	b.Run("list", func(b *testing.B) {
		db, _ := scaleDB(b, "list")
		ctx := testenv.Context(b, 30*time.Minute)
		start := time.Now()
		seedFolders(ctx, b, db, "small", smallBucket)
		seedFolders(ctx, b, db, "large", largeBucket)
		// A backend made after the files exist: it finds them as any
		// backend finds a bucket written before it started.
		be := gridfs.New(db, gridfs.Options{})
		if err := be.EnsureIndexes(ctx); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d + %d files in %.1f s", smallBucket, largeBucket, time.Since(start).Seconds())
		// On FerretDB the launcher gives new collections (here the folder
		// index's) their _id index within a second.
		time.Sleep(2 * time.Second)
		folder := fmt.Sprintf("d%04d/", smallBucket/folderFiles/2)
		// One measurement is the mean of listBatch listings in a row: one
		// takes about a millisecond, where a moment of other load shows.
		list := func(bucket string) float64 {
			start := time.Now()
			for range listBatch {
				p, err := be.List(ctx, bucket, store.ListOptions{Prefix: folder, Delimiter: "/", Limit: 100})
				if err != nil || len(p.Entries) != folderFiles {
					b.Fatalf("list %s/%s: %d entries, %v", bucket, folder, len(p.Entries), err)
				}
			}
			return float64(time.Since(start).Microseconds()) / 1000 / listBatch
		}
		move := func(bucket string) float64 {
			start := time.Now()
			for _, ft := range [][2]string{{"f00", "g00"}, {"g00", "f00"}} {
				if _, err := be.Move(ctx, store.MoveRequest{Bucket: bucket, From: folder + ft[0], To: folder + ft[1], Replace: store.ReplaceAny}); err != nil {
					b.Fatalf("move %s/%s%s: %v", bucket, folder, ft[0], err)
				}
			}
			return float64(time.Since(start).Microseconds()) / 2000
		}
		list("small") // warm up
		list("large")
		for b.Loop() {
			var ls, ll, ms, ml []float64
			for range listReps {
				ls = append(ls, list("small"))
				ll = append(ll, list("large"))
				ms = append(ms, move("small"))
				ml = append(ml, move("large"))
			}
			b.ReportMetric(median(ls), "list-100-ms")
			b.ReportMetric(median(ll), "list-10000-ms")
			b.ReportMetric(median(ll)/median(ls), "list-ratio")
			b.ReportMetric(median(ms), "move-100-ms")
			b.ReportMetric(median(ml), "move-10000-ms")
			b.Logf("10-file folder listed, medians of %d means of %d: %d-file bucket %.2f ms, %d-file bucket %.2f ms = %.2fx (target <= 1.5x); all: %.2f / %.2f",
				listReps, listBatch, smallBucket, median(ls), largeBucket, median(ll), median(ll)/median(ls), ls, ll)
			b.Logf("one move in that folder, medians of %d: %d-file bucket %.2f ms, %d-file bucket %.2f ms = %.2fx",
				listReps, smallBucket, median(ms), largeBucket, median(ml), median(ml)/median(ms))
		}
	})
}

// seedFolders writes n one-byte files, folderFiles to a folder
// (d0000/f00 …), straight into the bucket's GridFS collections in bulk, in
// the layout of the GridFS specification.
func seedFolders(ctx context.Context, b *testing.B, db *mongo.Database, bucket string, n int) {
	b.Helper()
	const batch = 1000
	for lo := 0; lo < n; lo += batch {
		var files, chunks []any
		for i := lo; i < min(n, lo+batch); i++ {
			id := bson.NewObjectID()
			files = append(files, bson.D{
				{Key: "_id", Value: id}, {Key: "length", Value: int64(1)}, {Key: "chunkSize", Value: int32(gridfs.DefaultChunkSize)},
				{Key: "uploadDate", Value: time.Now().UTC().Truncate(time.Millisecond)},
				{Key: "filename", Value: fmt.Sprintf("d%04d/f%02d", i/folderFiles, i%folderFiles)},
				{Key: "metadata", Value: bson.D{{Key: "owner", Value: "bench"}, {Key: "contentType", Value: "application/octet-stream"}}},
			})
			chunks = append(chunks, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "files_id", Value: id}, {Key: "n", Value: int32(0)},
				{Key: "data", Value: bson.Binary{Data: []byte{byte(i)}}}})
		}
		if _, err := db.Collection(bucket+".chunks").InsertMany(ctx, chunks); err != nil {
			b.Fatalf("seed %s.chunks: %v", bucket, err)
		}
		if _, err := db.Collection(bucket+".files").InsertMany(ctx, files); err != nil {
			b.Fatalf("seed %s.files: %v", bucket, err)
		}
	}
}
