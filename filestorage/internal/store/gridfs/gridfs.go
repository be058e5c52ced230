// Package gridfs is the filestorage backend on MongoDB GridFS. It keeps the
// standard layout of the GridFS specification (<bucket>.files and
// <bucket>.chunks, the spec's indexes), so any GridFS implementation reads
// what it writes and it reads what they write. SHA-256, owner, content type
// and custom metadata live under the files document's "metadata".
//
// It reads and writes chunks itself rather than through the driver's GridFS
// streams: writes hash and check the content before the files document
// commits it, and range reads query chunks from the first one the range
// needs, never the ones before. Every query reads a bounded batch, so no
// cursor outlives the client's operation timeout on a long download.
//
// On FerretDB 1.24 only a filter that is exactly {_id: …} is answered
// without reading the whole collection (with the index its launcher adds,
// tools/ferretdb), so the backend finds everything it reads often by _id:
// the chunks it writes have _ids derived from the file's id and the chunk's
// number ("<files_id hex>.<n>", recorded as metadata.chunkIds in the files
// document), and paths resolve through a folder index (folders.go). Files
// written before, or by other GridFS writers (ObjectID chunk _ids), are
// read with the files_id query as before.
package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/filecache"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/mongoconn"
)

// DefaultChunkSize is the GridFS chunk size when Options leave it zero (the
// spec's default, 255 KiB).
const DefaultChunkSize = 255 * 1024

// batchBytes is about how much one insert or one chunk query carries.
const batchBytes = 4 << 20

// startChunks is how many chunks the first insert of an upload of unknown
// size carries (1 MiB with the default chunk size): most videos and every
// MP3 of a talk fit in one insert, each of which FerretDB commits alone.
const startChunks = 4

// uploadsCollection holds the state of resumable uploads.
const uploadsCollection = "filestorage_uploads"

// Options configure a Backend.
type Options struct {
	// ChunkSize of new files (DefaultChunkSize when 0).
	ChunkSize int32
	// UploadTTL is how long an unfinished resumable upload lives.
	UploadTTL time.Duration
	// Cache, when set, keeps the bytes of the files this backend writes
	// (one-shot uploads) on local disk, for the reads that follow soon.
	Cache *filecache.Cache
	// ReconcileEvery bounds how often a path the folder index does not hold
	// makes the backend look through a bucket's files collection for files
	// another GridFS writer added (DefaultReconcileEvery when 0; negative:
	// never, such files then show by path once the index is rebuilt).
	ReconcileEvery time.Duration
}

// DefaultReconcileEvery is Options.ReconcileEvery's default.
const DefaultReconcileEvery = time.Minute

// Backend stores files in GridFS buckets of one database.
type Backend struct {
	db             *mongo.Database
	chunkSize      int32
	uploadTTL      time.Duration
	reconcileEvery time.Duration
	cache          *filecache.Cache

	mu            sync.Mutex
	indexed       map[string]bool
	folderIndexed map[string]bool
	reconciled    map[string]time.Time // when a miss last looked through the bucket
	idsIndexed    bool                 // the id index is built (ids.go)
	idScanned     time.Time            // when an id lookup last looked through every bucket
}

var _ store.Backend = (*Backend)(nil)

// New returns a Backend on db. It does not touch the database: call
// EnsureIndexes at start (a bucket's indexes are also made on its first
// write).
func New(db *mongo.Database, opts Options) *Backend {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.UploadTTL <= 0 {
		opts.UploadTTL = 24 * time.Hour
	}
	if opts.ReconcileEvery == 0 {
		opts.ReconcileEvery = DefaultReconcileEvery
	}
	return &Backend{db: db, chunkSize: opts.ChunkSize, uploadTTL: opts.UploadTTL, reconcileEvery: opts.ReconcileEvery, cache: opts.Cache,
		indexed: map[string]bool{}, folderIndexed: map[string]bool{}, reconciled: map[string]time.Time{}}
}

// EnsureIndexes creates the spec's indexes of every existing bucket and
// those of the uploads collection (EnsureIDIndex builds the id index).
func (b *Backend) EnsureIndexes(ctx context.Context) error {
	names, err := b.bucketNames(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := b.ensureBucket(ctx, n); err != nil {
			return err
		}
	}
	_, err = b.db.Collection(uploadsCollection).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "expires", Value: 1}}})
	if err != nil {
		return fmt.Errorf("gridfs: index %s: %w", uploadsCollection, err)
	}
	return nil
}

type fileMeta struct {
	SHA256         string            `bson:"sha256,omitempty"`
	Owner          string            `bson:"owner,omitempty"`
	ContentType    string            `bson:"contentType,omitempty"`
	Custom         map[string]string `bson:"custom,omitempty"`
	IdempotencyKey string            `bson:"idempotencyKey,omitempty"`
	// ChunkIDs is chunkIDScheme when the file's chunks have derived _ids.
	ChunkIDs string `bson:"chunkIds,omitempty"`
}

// chunkIDScheme names how derived chunk _ids are made (chunkID).
const chunkIDScheme = "files_id.n"

// chunkID is the _id of chunk n of file id: the file's id in hex, a dot,
// n in decimal.
func chunkID(id bson.ObjectID, n int32) string {
	return id.Hex() + "." + strconv.FormatInt(int64(n), 10)
}

// chunkDoc is chunk n of file id; derived says whether its _id is
// chunkID's (else a new ObjectID, as files written before have).
func chunkDoc(id bson.ObjectID, n int32, data []byte, derived bool) bson.D {
	var cid any = bson.NewObjectID()
	if derived {
		cid = chunkID(id, n)
	}
	return bson.D{{Key: "_id", Value: cid}, {Key: "files_id", Value: id}, {Key: "n", Value: n}, {Key: "data", Value: bson.Binary{Data: data}}}
}

// derivedChunks reports whether the file's chunks have derived _ids.
func (d filesDoc) derivedChunks() bool {
	return d.Metadata != nil && d.Metadata.ChunkIDs == chunkIDScheme
}

// chunkCount is how many chunks the file has.
func (d filesDoc) chunkCount() int32 {
	if d.ChunkSize <= 0 {
		return 0
	}
	return int32((d.Length + int64(d.ChunkSize) - 1) / int64(d.ChunkSize))
}

type filesDoc struct {
	ID         bson.ObjectID `bson:"_id"`
	Length     int64         `bson:"length"`
	ChunkSize  int32         `bson:"chunkSize"`
	UploadDate time.Time     `bson:"uploadDate"`
	Filename   string        `bson:"filename"`
	Metadata   *fileMeta     `bson:"metadata,omitempty"`
}

func (d filesDoc) file(bucket string) store.File {
	f := store.File{ID: d.ID.Hex(), Bucket: bucket, Path: d.Filename, Size: d.Length, Created: d.UploadDate.UTC()}
	if m := d.Metadata; m != nil {
		f.SHA256, f.Owner, f.ContentType, f.Custom = m.SHA256, m.Owner, m.ContentType, m.Custom
	}
	if f.ContentType == "" {
		f.ContentType = "application/octet-stream"
	}
	return f
}

func (b *Backend) files(bucket string) *mongo.Collection  { return b.db.Collection(bucket + ".files") }
func (b *Backend) chunks(bucket string) *mongo.Collection { return b.db.Collection(bucket + ".chunks") }

// bucketNames lists the buckets: every collection named <bucket>.files.
func (b *Backend) bucketNames(ctx context.Context) ([]string, error) {
	names, err := b.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("gridfs: list collections: %w", err)
	}
	var out []string
	for _, n := range names {
		if bucket, ok := strings.CutSuffix(n, ".files"); ok && store.ValidateBucket(bucket) == nil {
			out = append(out, bucket)
		}
	}
	return out, nil
}

// ensureBucket creates the spec's indexes (and ours) once per bucket.
func (b *Backend) ensureBucket(ctx context.Context, bucket string) error {
	b.mu.Lock()
	done := b.indexed[bucket]
	b.mu.Unlock()
	if done {
		return nil
	}
	err := mongoconn.EnsureIndexes(ctx, b.files(bucket),
		mongo.IndexModel{Keys: bson.D{{Key: "filename", Value: 1}, {Key: "uploadDate", Value: 1}}},
		mongo.IndexModel{Keys: bson.D{{Key: "metadata.owner", Value: 1}}},
	)
	if err != nil {
		return fmt.Errorf("gridfs: indexes of %s.files: %w", bucket, err)
	}
	err = mongoconn.EnsureIndexes(ctx, b.chunks(bucket), mongo.IndexModel{
		Keys: bson.D{{Key: "files_id", Value: 1}, {Key: "n", Value: 1}}, Options: options.Index().SetUnique(true),
	})
	if err != nil {
		return fmt.Errorf("gridfs: index of %s.chunks: %w", bucket, err)
	}
	b.mu.Lock()
	b.indexed[bucket] = true
	b.mu.Unlock()
	return nil
}

func validate(bucket, path string) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	return store.ValidatePath(path)
}

// findPath returns the file at path through the folder index. When the
// index does not hold the path and thorough, the files another GridFS
// writer added are indexed first (reconcile): on FerretDB that reads the
// whole files collection, so it happens at most once per ReconcileEvery
// and bucket, and the checks that a path is free (moves, exclusive writes)
// rely on the index alone.
func (b *Backend) findPath(ctx context.Context, bucket, path string, thorough bool) (filesDoc, error) {
	if err := b.ensureFolderIndex(ctx, bucket); err != nil {
		return filesDoc{}, err
	}
	for {
		e, ok, err := b.indexLookup(ctx, bucket, path)
		if err != nil {
			return filesDoc{}, err
		}
		if ok {
			d, err := b.fileByID(ctx, bucket, e.ID)
			if err == nil || errs.CodeOf(err) != errs.NotFound {
				return d, err
			}
			// An entry whose file is gone (a delete cut short): drop it.
			if err := b.indexRemove(ctx, bucket, path, e.ID); err != nil {
				return filesDoc{}, err
			}
		}
		if !thorough {
			return filesDoc{}, errs.E(errs.NotFound, "no file %s/%s", bucket, path)
		}
		thorough = false // one reconcile, then the index answers
		if found, err := b.reconcile(ctx, bucket); err != nil || !found {
			if err != nil {
				return filesDoc{}, err
			}
			return filesDoc{}, errs.E(errs.NotFound, "no file %s/%s", bucket, path)
		}
	}
}

// fileByID reads the files document id of bucket.
func (b *Backend) fileByID(ctx context.Context, bucket string, id bson.ObjectID) (filesDoc, error) {
	var d filesDoc
	err := b.files(bucket).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, errs.E(errs.NotFound, "no file with id %q", id.Hex())
	}
	if err != nil {
		return d, fmt.Errorf("gridfs: find %s in %s: %w", id.Hex(), bucket, err)
	}
	return d, nil
}

// Put implements store.Backend. The write is journalled in the uploads
// collection as a direct upload until it commits or its chunks are dropped:
// when neither can happen (the database went away mid-write, the process
// died), the expired-uploads sweep removes its chunks later.
func (b *Backend) Put(ctx context.Context, req store.PutRequest, r io.Reader) (store.File, error) {
	if err := validate(req.Bucket, req.Path); err != nil {
		return store.File{}, err
	}
	if err := b.ensureBucket(ctx, req.Bucket); err != nil {
		return store.File{}, err
	}
	if err := b.ensureFolderIndex(ctx, req.Bucket); err != nil {
		return store.File{}, err
	}
	if req.Exclusive {
		if err := b.checkAbsent(ctx, req.Bucket, req.Path); err != nil {
			return store.File{}, err
		}
	}
	id := bson.NewObjectID()
	now := time.Now().UTC().Truncate(time.Millisecond)
	journal := uploadDoc{ID: id, Bucket: req.Bucket, Path: req.Path, Owner: req.Owner, Length: -1, ChunkSize: b.chunkSize,
		Created: now, Expires: now.Add(b.uploadTTL), Direct: true}
	rules := commitRules{exclusive: req.Exclusive, replace: req.Replace, quota: req.Quota}
	if req.Quota > 0 {
		// The hold goes with the journal: its sweep releases it too.
		rules.hold, journal.Held = id.Hex(), true
		var err error
		if r, err = b.reserveStream(ctx, req, rules.hold, journal.Expires, r); err != nil {
			return store.File{}, err
		}
	}
	if _, err := b.uploads().InsertOne(ctx, journal); err != nil {
		if rules.hold != "" {
			b.releaseHold(ctx, req.Owner, rules.hold)
		}
		return store.File{}, fmt.Errorf("gridfs: journal the write of %s/%s: %w", req.Bucket, req.Path, err)
	}
	f, err := b.writeAndCommit(ctx, req, id, r, rules)
	if err != nil && rules.hold != "" {
		b.releaseHold(ctx, req.Owner, rules.hold)
	}
	if err != nil && b.dropChunks(req.Bucket, id) != nil {
		return store.File{}, err // the journal stays: the sweep drops the chunks
	}
	b.forgetJournal(id)
	return f, err
}

func (b *Backend) writeAndCommit(ctx context.Context, req store.PutRequest, id bson.ObjectID, r io.Reader, rules commitRules) (f store.File, err error) {
	if b.cache != nil && req.SizeHint <= b.cache.Max() {
		cw := b.cache.Writer(id.Hex())
		r = io.TeeReader(r, cw)
		defer func() {
			if err != nil {
				cw.Abort()
			} else {
				cw.Commit(f.Size)
			}
		}()
	}
	lr := store.NewLimitedReader(r, req.MaxSize)
	n, _, err := b.writeChunks(ctx, req.Bucket, id, 0, nil, lr, req.SizeHint, false, true, nil)
	if err == nil {
		err = store.CheckDigest(req.SHA256, lr.Sum())
	}
	if err == nil && req.Exclusive {
		err = b.checkAbsent(ctx, req.Bucket, req.Path)
	}
	if err != nil {
		return store.File{}, err
	}
	d := filesDoc{
		ID: id, Length: n, ChunkSize: b.chunkSize, UploadDate: time.Now().UTC().Truncate(time.Millisecond), Filename: req.Path,
		Metadata: &fileMeta{SHA256: lr.Sum(), Owner: req.Owner, ContentType: req.ContentType, Custom: req.Custom, IdempotencyKey: req.IdempotencyKey,
			ChunkIDs: chunkIDScheme},
	}
	if _, err := b.files(req.Bucket).InsertOne(ctx, d); err != nil {
		return store.File{}, fmt.Errorf("gridfs: insert %s.files %s: %w", req.Bucket, d.ID.Hex(), err)
	}
	if err := b.commit(ctx, req.Bucket, d, rules); err != nil {
		if derr := b.deleteData(context.WithoutCancel(ctx), req.Bucket, d); derr != nil {
			return store.File{}, errors.Join(err, derr)
		}
		return store.File{}, err
	}
	return d.file(req.Bucket), nil
}

// publish records d's bucket in the id index, points d's path at d in the
// folder index and drops the revision it replaces. check (when not nil)
// sees the entry d replaces (nil: none) under the folder's lock, and an
// error of it leaves the folder index as it was (the id record goes with
// d's data, which the caller drops).
func (b *Backend) publish(ctx context.Context, bucket string, d filesDoc, exclusive bool, check func(prev *folderFile) error) error {
	if err := b.recordID(ctx, bucket, d.ID); err != nil {
		return err
	}
	prev, err := b.indexPut(ctx, bucket, d.Filename, d, exclusive, check)
	if err != nil {
		return err
	}
	if err := b.dropRevision(ctx, bucket, prev, d.ID); err != nil {
		return err
	}
	return b.recordIdempotency(ctx, bucket, d)
}

// dropRevision deletes the file an index entry named before it was
// replaced (nothing when prev is nil or still the file keep).
func (b *Backend) dropRevision(ctx context.Context, bucket string, prev *folderFile, keep bson.ObjectID) error {
	if prev == nil || prev.ID == keep {
		return nil
	}
	old, err := b.fileByID(ctx, bucket, prev.ID)
	if errs.CodeOf(err) == errs.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	return b.deleteData(ctx, bucket, old)
}

func (b *Backend) checkAbsent(ctx context.Context, bucket, path string) error {
	_, err := b.findPath(ctx, bucket, path, false)
	switch {
	case err == nil:
		return errs.E(errs.Conflict, "%s/%s already exists", bucket, path)
	case errs.CodeOf(err) == errs.NotFound:
		return nil
	}
	return err
}

// dropChunks removes the chunks of a write that did not commit. It runs on
// its own context: the request's may be what failed.
func (b *Backend) dropChunks(bucket string, id bson.ObjectID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.chunks(bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}}); err != nil {
		return fmt.Errorf("gridfs: drop the chunks of %s: %w", id.Hex(), err)
	}
	return nil
}

// forgetJournal removes the journal entry of a direct write that committed
// or was cleaned up. Should that fail, the sweep removes the entry later
// and keeps the chunks of a file that committed.
func (b *Backend) forgetJournal(id bson.ObjectID) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = b.uploads().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
}

// writeChunks writes r as chunks of id numbered from n, starting with the
// bytes of head (a partial chunk kept from an earlier write). Only whole
// chunks are inserted, so it never rewrites one; the bytes past the last
// whole chunk are inserted as the final chunk when keepTail is false, and
// returned as tail otherwise (a resumable upload keeps them for its next
// part). At every batch it calls flushed (when non-nil) with the bytes
// written so far and the tail, and runs the function it returns once those
// bytes are in. derived gives the chunks chunkID's _ids. Writes issue no query on the chunks: on
// FerretDB every query scans the whole collection.
func (b *Backend) writeChunks(ctx context.Context, bucket string, id bson.ObjectID, n int32, head []byte, r io.Reader,
	expect int64, keepTail, derived bool, flushed func(written int64, tail []byte) (record func(context.Context) error),
) (written int64, tail []byte, err error) {
	cs := int(b.chunkSize)
	per := max(1, batchBytes/cs)
	// Two buffers: one is read into while the other's chunks are inserted.
	// They hold no more than what is coming: the expected size's chunks, or
	// startChunks at first and twice as many at each batch, up to per
	// (twelve 0.5 MB uploads at once held 8 MiB each, and filestorage's RSS
	// grew 71 MiB).
	size := min(per, startChunks)
	if expect > 0 {
		size = min(per, int((expect+int64(cs)-1)/int64(cs)))
	}
	bufs := [2][]byte{make([]byte, size*cs), nil}
	cur := 0
	buf := bufs[cur]
	fill := copy(buf, head)
	var inflight chan error
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight
		inflight = nil
		return err
	}
	// flush starts inserting the whole chunks in buf (and the rest too when
	// last and !keepTail), after the previous insert has finished, and
	// carries the rest over to the front of the other buffer.
	flush := func(ctx context.Context, last bool) error {
		whole := fill / cs * cs
		end := whole
		if last && !keepTail {
			end = fill
		}
		docs := make([]any, 0, size)
		for off := 0; off < end; off += cs {
			docs = append(docs, chunkDoc(id, n+int32(len(docs)), buf[off:min(off+cs, end)], derived))
		}
		if err := wait(); err != nil {
			return err
		}
		first := n
		n += int32(len(docs))
		written += int64(end)
		if expect <= 0 {
			size = min(per, 2*size)
		}
		if len(bufs[1-cur]) < size*cs {
			bufs[1-cur] = make([]byte, size*cs)
		}
		next := bufs[1-cur]
		rest := copy(next, buf[end:fill])
		var record func(context.Context) error
		if flushed != nil {
			// The state that goes with these bytes is taken now, before
			// more is read; it is recorded once they are in.
			record = flushed(written, slices.Clone(next[:rest]))
		}
		inflight = make(chan error, 1)
		go func() {
			var err error
			if len(docs) > 0 {
				err = b.insertChunks(ctx, bucket, id, first, docs, derived)
			}
			if err == nil && record != nil {
				err = record(ctx)
			}
			inflight <- err
		}()
		cur = 1 - cur
		buf, fill = next, rest
		if last {
			return wait()
		}
		return nil
	}
	for {
		m, rerr := io.ReadFull(r, buf[fill:])
		fill += m
		switch {
		case rerr == nil:
			if err := flush(ctx, false); err != nil {
				_ = wait()
				return written, nil, err
			}
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			if err := flush(ctx, true); err != nil {
				return written, nil, err
			}
			return written, slices.Clone(buf[:fill]), nil
		case errs.CodeOf(rerr) == errs.TooLarge:
			// What is being inserted must land before the caller drops it.
			_ = wait()
			return written, nil, rerr
		default:
			// Keep what arrived before the failure (a resumable upload
			// continues from there), then report it. A dropped connection
			// has cancelled the request's context: this last write gets
			// its own.
			if err := wait(); err != nil {
				return written, nil, err
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			err := flush(fctx, true)
			cancel()
			if err != nil {
				return written, nil, err
			}
			return written, slices.Clone(buf[:fill]), store.ReadError(rerr)
		}
	}
}

// insertChunks inserts docs, chunks n… of id. Chunks left there by a write
// that failed before it was recorded make it fail on the unique index:
// those are removed (by _id when derived, the batch's chunks; else every
// chunk from n) and the insert retried once.
func (b *Backend) insertChunks(ctx context.Context, bucket string, id bson.ObjectID, n int32, docs []any, derived bool) error {
	_, err := b.chunks(bucket).InsertMany(ctx, docs)
	if mongo.IsDuplicateKeyError(err) {
		var derr error
		if derived {
			for i := range docs {
				if _, derr = b.chunks(bucket).DeleteOne(ctx, bson.D{{Key: "_id", Value: chunkID(id, n+int32(i))}}); derr != nil {
					break
				}
			}
		} else {
			_, derr = b.chunks(bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}, {Key: "n", Value: bson.D{{Key: "$gte", Value: n}}}})
		}
		if derr != nil {
			return fmt.Errorf("gridfs: clear stale chunks of %s: %w", id.Hex(), derr)
		}
		_, err = b.chunks(bucket).InsertMany(ctx, docs)
	}
	if err != nil {
		return fmt.Errorf("gridfs: write %s.chunks: %w", bucket, err)
	}
	return nil
}

// Stat implements store.Backend.
func (b *Backend) Stat(ctx context.Context, id string) (store.File, error) {
	d, bucket, err := b.findID(ctx, id)
	if err != nil {
		return store.File{}, err
	}
	return d.file(bucket), nil
}

// StatPath implements store.Backend.
func (b *Backend) StatPath(ctx context.Context, bucket, path string) (store.File, error) {
	if err := validate(bucket, path); err != nil {
		return store.File{}, err
	}
	d, err := b.findPath(ctx, bucket, path, true)
	if err != nil {
		return store.File{}, err
	}
	return d.file(bucket), nil
}

// FindIdempotent implements store.Backend: one lookup of the key's record
// in the folder index (see idempotencyID), then of its file.
func (b *Backend) FindIdempotent(ctx context.Context, bucket, owner, key string) (store.File, error) {
	if err := store.ValidateBucket(bucket); err != nil {
		return store.File{}, err
	}
	if err := b.ensureFolderIndex(ctx, bucket); err != nil {
		return store.File{}, err
	}
	var rec idempotencyDoc
	err := b.folders(bucket).FindOne(ctx, bson.D{{Key: "_id", Value: idempotencyID(owner, key)}}).Decode(&rec)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.File{}, errs.E(errs.NotFound, "no file with this idempotency key")
	}
	if err != nil {
		return store.File{}, fmt.Errorf("gridfs: find idempotency key in %s: %w", bucket, err)
	}
	d, err := b.fileByID(ctx, bucket, rec.File)
	if errs.CodeOf(err) == errs.NotFound || err == nil && (d.Metadata == nil || d.Metadata.Owner != owner || d.Metadata.IdempotencyKey != key) {
		return store.File{}, errs.E(errs.NotFound, "no file with this idempotency key")
	}
	if err != nil {
		return store.File{}, err
	}
	return d.file(bucket), nil
}

// Open implements store.Backend.
func (b *Backend) Open(ctx context.Context, f store.File, offset, length int64) (io.ReadCloser, error) {
	oid, err := bson.ObjectIDFromHex(f.ID)
	if err != nil {
		return nil, errs.E(errs.NotFound, "no file with id %q", f.ID)
	}
	var d filesDoc
	err = b.files(f.Bucket).FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "no file with id %q", f.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("gridfs: open %s: %w", f.ID, err)
	}
	if offset < 0 || offset > d.Length {
		return nil, errs.E(errs.Invalid, "offset %d is outside the file", offset)
	}
	if length < 0 || offset+length > d.Length {
		length = d.Length - offset
	}
	if d.ChunkSize <= 0 {
		return nil, fmt.Errorf("gridfs: file %s has chunk size %d", f.ID, d.ChunkSize)
	}
	// The file exists (its document was just read): its cached bytes, if
	// any, are its bytes.
	if cf, ok := b.cache.Open(f.ID, d.Length); ok {
		return cachedRange{Reader: io.NewSectionReader(cf, offset, length), f: cf}, nil
	}
	if d.derivedChunks() {
		return &idChunkReader{
			ctx: ctx, coll: b.chunks(f.Bucket), id: oid, chunkSize: int64(d.ChunkSize), length: d.Length,
			span: span{pos: offset, end: offset + length},
		}, nil
	}
	return &chunkReader{
		ctx: ctx, coll: b.chunks(f.Bucket), id: oid, chunkSize: int64(d.ChunkSize), length: d.Length,
		span: span{pos: offset, end: offset + length},
	}, nil
}

// List implements store.Backend. It walks the folder index: a folder's
// listing reads that folder's document alone; a listing without delimiter
// descends into the sub-folders in order until the page is full.
func (b *Backend) List(ctx context.Context, bucket string, opts store.ListOptions) (store.Page, error) {
	if err := store.ValidateBucket(bucket); err != nil {
		return store.Page{}, err
	}
	if err := store.ValidateListOptions(&opts); err != nil {
		return store.Page{}, err
	}
	if err := b.ensureFolderIndex(ctx, bucket); err != nil {
		return store.Page{}, err
	}
	w := walk{b: b, bucket: bucket, opts: opts}
	folder, namePrefix := splitPath(opts.Prefix)
	if err := w.folder(ctx, folder, namePrefix); err != nil {
		return store.Page{}, err
	}
	page := store.Page{}
	for _, e := range w.found {
		if len(page.Entries) == opts.Limit {
			page.More = true
			break
		}
		if e.prefix != "" {
			page.Entries = append(page.Entries, store.Entry{Prefix: e.prefix})
			continue
		}
		f := e.file.file(bucket, e.path)
		page.Entries = append(page.Entries, store.Entry{File: &f})
	}
	return page, nil
}

// walk collects up to Limit+1 entries of a listing from the folder index.
type walk struct {
	b      *Backend
	bucket string
	opts   store.ListOptions
	found  []walkEntry
}

type walkEntry struct {
	path, prefix string
	file         folderFile
}

func (w *walk) full() bool { return len(w.found) > w.opts.Limit }

// folder adds the entries of folder whose names start with namePrefix, in
// key order: a file's key is its path, a sub-folder's its path and "/".
func (w *walk) folder(ctx context.Context, folder, namePrefix string) error {
	d, _, err := w.b.getFolder(ctx, w.bucket, folder)
	if err != nil {
		return err
	}
	after := w.opts.After
	i, j := 0, 0
	for (i < len(d.Files) || j < len(d.Dirs)) && !w.full() {
		fileNext := j == len(d.Dirs) || i < len(d.Files) && d.Files[i].Name < d.Dirs[j].Name+"/"
		if fileNext {
			f := d.Files[i]
			i++
			key := folder + f.Name
			if strings.HasPrefix(f.Name, namePrefix) && key > after && (w.opts.Owner == "" || f.Owner == w.opts.Owner) {
				w.found = append(w.found, walkEntry{path: key, file: f})
			}
			continue
		}
		dir := d.Dirs[j]
		j++
		key := folder + dir.Name + "/"
		if !strings.HasPrefix(dir.Name, namePrefix) || !dir.has(w.opts.Owner) {
			continue
		}
		if w.opts.Delimiter != "" {
			if key > after {
				w.found = append(w.found, walkEntry{prefix: key})
			}
			continue
		}
		// Every path below starts with key: none is after `after` when
		// after is past key without starting with it.
		if after > key && !strings.HasPrefix(after, key) {
			continue
		}
		if err := w.folder(ctx, key, ""); err != nil {
			return err
		}
	}
	return nil
}

// Move implements store.Backend. It changes the index entries of both
// paths in one step, under the locks of both folders, where it checks that
// the file it moves is still the one at from and whose file it replaces;
// then the files document's filename. The bucket's other files are never
// read.
func (b *Backend) Move(ctx context.Context, req store.MoveRequest) (store.File, error) {
	if err := validate(req.Bucket, req.From); err != nil {
		return store.File{}, err
	}
	if err := store.ValidatePath(req.To); err != nil {
		return store.File{}, err
	}
	// The file at from may change between the read and the move's step
	// (a replace by its owner): the move then reads it again.
	for range 3 {
		f, err := b.move(ctx, req)
		if !errors.Is(err, errSourceMoved) {
			return f, err
		}
	}
	return store.File{}, errs.E(errs.Conflict, "%s/%s kept changing while it was being moved; nothing was moved, try again", req.Bucket, req.From)
}

// move is one attempt of Move: errSourceMoved when the file at from
// changed before the move's step.
func (b *Backend) move(ctx context.Context, req store.MoveRequest) (store.File, error) {
	bucket, from, to := req.Bucket, req.From, req.To
	d, err := b.findPath(ctx, bucket, from, true)
	if err != nil {
		return store.File{}, err
	}
	if !req.Replace.Allows(req.Owner, d.file(bucket).Owner) {
		return store.File{}, errs.E(errs.NotFound, "no file %s/%s", bucket, from)
	}
	if from == to {
		return d.file(bucket), nil
	}
	// Drops an entry at to whose file is gone (a delete cut short), so
	// that it is not taken for a file the move would replace.
	if _, err := b.findPath(ctx, bucket, to, false); err != nil && errs.CodeOf(err) != errs.NotFound {
		return store.File{}, err
	}
	prev, err := b.indexMove(ctx, bucket, from, to, d, func(prev *folderFile) error {
		switch {
		case prev == nil:
			return nil
		case !req.Replace.Allows(req.Owner, prev.Owner):
			return store.ErrPathTaken(bucket, to)
		case !req.Overwrite:
			return errs.E(errs.Conflict, "%s/%s already exists", bucket, to)
		}
		return nil
	})
	if err != nil {
		return store.File{}, err
	}
	if _, err := b.files(bucket).UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "filename", Value: to}}}}); err != nil {
		return store.File{}, fmt.Errorf("gridfs: move %s/%s: %w", bucket, from, err)
	}
	d.Filename = to
	if err := b.dropRevision(ctx, bucket, prev, d.ID); err != nil {
		return store.File{}, err
	}
	return d.file(bucket), nil
}

// Delete implements store.Backend.
func (b *Backend) Delete(ctx context.Context, id string) error {
	d, bucket, err := b.findID(ctx, id)
	if err != nil {
		return err
	}
	if err := b.ensureFolderIndex(ctx, bucket); err != nil {
		return err
	}
	// The path goes first: should the rest fail, the file is still there
	// by id for another Delete, and no listing shows a file that is gone.
	if err := b.indexRemove(ctx, bucket, d.Filename, d.ID); err != nil {
		return err
	}
	return b.deleteData(ctx, bucket, d)
}

// deleteData removes the files document first (the file disappears), its
// record in the id index, then its chunks: by _id when they are derived,
// else by files_id.
func (b *Backend) deleteData(ctx context.Context, bucket string, d filesDoc) error {
	b.cache.Remove(d.ID.Hex())
	if m := d.Metadata; m != nil && m.IdempotencyKey != "" {
		if _, err := b.folders(bucket).DeleteOne(ctx, bson.D{{Key: "_id", Value: idempotencyID(m.Owner, m.IdempotencyKey)},
			{Key: "file", Value: d.ID}}); err != nil {
			return fmt.Errorf("gridfs: delete the idempotency key of %s: %w", d.ID.Hex(), err)
		}
	}
	if _, err := b.files(bucket).DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}}); err != nil {
		return fmt.Errorf("gridfs: delete %s.files %s: %w", bucket, d.ID.Hex(), err)
	}
	if err := b.forgetID(ctx, bucket, d.ID); err != nil {
		return err
	}
	if !d.derivedChunks() {
		if _, err := b.chunks(bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: d.ID}}); err != nil {
			return fmt.Errorf("gridfs: delete %s.chunks of %s: %w", bucket, d.ID.Hex(), err)
		}
		return nil
	}
	count := d.chunkCount()
	next := make(chan int32)
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	for range min(4, max(1, int(count))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				if _, err := b.chunks(bucket).DeleteOne(ctx, bson.D{{Key: "_id", Value: chunkID(d.ID, n)}}); err != nil {
					errc <- fmt.Errorf("gridfs: delete chunk %d of %s: %w", n, d.ID.Hex(), err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for n := range count {
		select {
		case next <- n:
		case err = <-errc:
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errc)
	return errors.Join(err, <-errc)
}

// Buckets implements store.Backend.
func (b *Backend) Buckets(ctx context.Context, owner string) ([]store.BucketStats, error) {
	names, err := b.bucketNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]store.BucketStats, 0, len(names))
	for _, n := range names {
		files, bytes, err := b.sum(ctx, n, owner)
		if err != nil {
			return nil, err
		}
		out = append(out, store.BucketStats{Name: n, Files: files, Bytes: bytes})
	}
	return out, nil
}

// sum counts the files of owner ("" for everyone's) in the bucket and their
// bytes, from the top folder of its index (one document read by _id: the
// bytes below each sub-folder per owner, and the top's own files), never
// from the files collection, which FerretDB would read whole. Files of
// other GridFS writers count once the reconcile has indexed them.
func (b *Backend) sum(ctx context.Context, bucket, owner string) (int64, int64, error) {
	if err := b.ensureFolderIndex(ctx, bucket); err != nil {
		return 0, 0, err
	}
	top, _, err := b.getFolder(ctx, bucket, "")
	if err != nil {
		return 0, 0, fmt.Errorf("gridfs: sum %s: %w", bucket, err)
	}
	var files, bytes int64
	for _, f := range top.Files {
		if owner == "" || f.Owner == owner {
			files++
			bytes += f.Size
		}
	}
	for _, d := range top.Dirs {
		for _, o := range d.Owners {
			if owner == "" || o.Owner == owner {
				files += o.Files
				bytes += o.Bytes
			}
		}
	}
	return files, bytes, nil
}

// HasBucket implements store.Backend.
func (b *Backend) HasBucket(ctx context.Context, bucket string) (bool, error) {
	if err := store.ValidateBucket(bucket); err != nil {
		return false, err
	}
	names, err := b.bucketNames(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(names, bucket), nil
}

// Usage implements store.Backend.
func (b *Backend) Usage(ctx context.Context, owner string) (int64, error) {
	stats, err := b.Buckets(ctx, owner)
	if err != nil {
		return 0, err
	}
	return store.TotalBytes(stats), nil
}

// cachedRange is a range of a file read from the cache.
type cachedRange struct {
	io.Reader
	f *os.File
}

func (c cachedRange) Close() error { return c.f.Close() }
