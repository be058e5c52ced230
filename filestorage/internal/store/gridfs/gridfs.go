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
package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/mongoconn"
)

// DefaultChunkSize is the GridFS chunk size when Options leave it zero (the
// spec's default, 255 KiB).
const DefaultChunkSize = 255 * 1024

// batchBytes is about how much one insert or one chunk query carries.
const batchBytes = 4 << 20

// uploadsCollection holds the state of resumable uploads.
const uploadsCollection = "filestorage_uploads"

// Options configure a Backend.
type Options struct {
	// ChunkSize of new files (DefaultChunkSize when 0).
	ChunkSize int32
	// UploadTTL is how long an unfinished resumable upload lives.
	UploadTTL time.Duration
}

// Backend stores files in GridFS buckets of one database.
type Backend struct {
	db        *mongo.Database
	chunkSize int32
	uploadTTL time.Duration

	mu      sync.Mutex
	indexed map[string]bool
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
	return &Backend{db: db, chunkSize: opts.ChunkSize, uploadTTL: opts.UploadTTL, indexed: map[string]bool{}}
}

// EnsureIndexes creates the spec's indexes of every existing bucket and
// those of the uploads collection.
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

// newest is the sort that puts the current revision of a path first.
var newest = bson.D{{Key: "filename", Value: 1}, {Key: "uploadDate", Value: -1}, {Key: "_id", Value: -1}}

func (b *Backend) findPath(ctx context.Context, bucket, path string) (filesDoc, error) {
	var d filesDoc
	err := b.files(bucket).FindOne(ctx, bson.D{{Key: "filename", Value: path}}, options.FindOne().SetSort(newest)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, errs.E(errs.NotFound, "no file %s/%s", bucket, path)
	}
	if err != nil {
		return d, fmt.Errorf("gridfs: find %s/%s: %w", bucket, path, err)
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
	if req.Exclusive {
		if err := b.checkAbsent(ctx, req.Bucket, req.Path); err != nil {
			return store.File{}, err
		}
	}
	id := bson.NewObjectID()
	now := time.Now().UTC().Truncate(time.Millisecond)
	journal := uploadDoc{ID: id, Bucket: req.Bucket, Path: req.Path, Owner: req.Owner, Length: -1, ChunkSize: b.chunkSize,
		Created: now, Expires: now.Add(b.uploadTTL), Direct: true}
	if _, err := b.uploads().InsertOne(ctx, journal); err != nil {
		return store.File{}, fmt.Errorf("gridfs: journal the write of %s/%s: %w", req.Bucket, req.Path, err)
	}
	f, err := b.writeAndCommit(ctx, req, id, r)
	if err != nil && b.dropChunks(req.Bucket, id) != nil {
		return store.File{}, err // the journal stays: the sweep drops the chunks
	}
	b.forgetJournal(id)
	return f, err
}

func (b *Backend) writeAndCommit(ctx context.Context, req store.PutRequest, id bson.ObjectID, r io.Reader) (store.File, error) {
	lr := store.NewLimitedReader(r, req.MaxSize)
	n, _, err := b.writeChunks(ctx, req.Bucket, id, 0, nil, lr, false, nil)
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
		Metadata: &fileMeta{SHA256: lr.Sum(), Owner: req.Owner, ContentType: req.ContentType, Custom: req.Custom, IdempotencyKey: req.IdempotencyKey},
	}
	if _, err := b.files(req.Bucket).InsertOne(ctx, d); err != nil {
		return store.File{}, fmt.Errorf("gridfs: insert %s.files %s: %w", req.Bucket, d.ID.Hex(), err)
	}
	if err := b.dropOlderRevisions(ctx, req.Bucket, d); err != nil {
		return store.File{}, err
	}
	return d.file(req.Bucket), nil
}

func (b *Backend) dropOlderRevisions(ctx context.Context, bucket string, d filesDoc) error {
	cur, err := b.files(bucket).Find(ctx, bson.D{{Key: "filename", Value: d.Filename}, {Key: "_id", Value: bson.D{{Key: "$ne", Value: d.ID}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("gridfs: find revisions of %s/%s: %w", bucket, d.Filename, err)
	}
	var old []filesDoc
	if err := cur.All(ctx, &old); err != nil {
		return fmt.Errorf("gridfs: read revisions of %s/%s: %w", bucket, d.Filename, err)
	}
	for _, o := range old {
		if err := b.deleteDoc(ctx, bucket, o.ID); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) checkAbsent(ctx context.Context, bucket, path string) error {
	_, err := b.findPath(ctx, bucket, path)
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
// bytes are in. Writes issue no query on the chunks: on
// FerretDB every query scans the whole collection.
func (b *Backend) writeChunks(ctx context.Context, bucket string, id bson.ObjectID, n int32, head []byte, r io.Reader,
	keepTail bool, flushed func(written int64, tail []byte) (record func(context.Context) error),
) (written int64, tail []byte, err error) {
	cs := int(b.chunkSize)
	per := max(1, batchBytes/cs)
	// Two buffers: one is read into while the other's chunks are inserted.
	bufs := [2][]byte{make([]byte, per*cs), make([]byte, per*cs)}
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
		docs := make([]any, 0, per)
		for off := 0; off < end; off += cs {
			docs = append(docs, bson.D{
				{Key: "_id", Value: bson.NewObjectID()}, {Key: "files_id", Value: id},
				{Key: "n", Value: n + int32(len(docs))}, {Key: "data", Value: bson.Binary{Data: buf[off:min(off+cs, end)]}},
			})
		}
		if err := wait(); err != nil {
			return err
		}
		first := n
		n += int32(len(docs))
		written += int64(end)
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
				err = b.insertChunks(ctx, bucket, id, first, docs)
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
// those are removed and the insert retried once.
func (b *Backend) insertChunks(ctx context.Context, bucket string, id bson.ObjectID, n int32, docs []any) error {
	_, err := b.chunks(bucket).InsertMany(ctx, docs)
	if mongo.IsDuplicateKeyError(err) {
		if _, derr := b.chunks(bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}, {Key: "n", Value: bson.D{{Key: "$gte", Value: n}}}}); derr != nil {
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

func (b *Backend) findID(ctx context.Context, id string) (filesDoc, string, error) {
	var d filesDoc
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return d, "", errs.E(errs.NotFound, "no file with id %q", id)
	}
	buckets, err := b.bucketNames(ctx)
	if err != nil {
		return d, "", err
	}
	for _, bucket := range buckets {
		err := b.files(bucket).FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d)
		if err == nil {
			return d, bucket, nil
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return d, "", fmt.Errorf("gridfs: find %s in %s: %w", id, bucket, err)
		}
	}
	return d, "", errs.E(errs.NotFound, "no file with id %q", id)
}

// StatPath implements store.Backend.
func (b *Backend) StatPath(ctx context.Context, bucket, path string) (store.File, error) {
	if err := validate(bucket, path); err != nil {
		return store.File{}, err
	}
	d, err := b.findPath(ctx, bucket, path)
	if err != nil {
		return store.File{}, err
	}
	return d.file(bucket), nil
}

// FindIdempotent implements store.Backend.
func (b *Backend) FindIdempotent(ctx context.Context, bucket, owner, key string) (store.File, error) {
	if err := store.ValidateBucket(bucket); err != nil {
		return store.File{}, err
	}
	var d filesDoc
	err := b.files(bucket).FindOne(ctx, bson.D{{Key: "metadata.idempotencyKey", Value: key}, {Key: "metadata.owner", Value: owner}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.File{}, errs.E(errs.NotFound, "no file with this idempotency key")
	}
	if err != nil {
		return store.File{}, fmt.Errorf("gridfs: find idempotency key in %s: %w", bucket, err)
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
	return &chunkReader{
		ctx: ctx, coll: b.chunks(f.Bucket), id: oid, chunkSize: int64(d.ChunkSize), length: d.Length,
		pos: offset, end: offset + length,
	}, nil
}

// List implements store.Backend.
func (b *Backend) List(ctx context.Context, bucket string, opts store.ListOptions) (store.Page, error) {
	if err := store.ValidateBucket(bucket); err != nil {
		return store.Page{}, err
	}
	if err := store.ValidateListOptions(&opts); err != nil {
		return store.Page{}, err
	}
	lower, strict := opts.Prefix, false
	if opts.After > lower {
		lower, strict = opts.After, true
		if opts.Delimiter != "" && strings.HasSuffix(opts.After, opts.Delimiter) {
			lower, strict = prefixEnd(opts.After), false
		}
	}
	var entries []store.Entry
	lastFile := ""
	for len(entries) <= opts.Limit {
		op := "$gte"
		if strict {
			op = "$gt"
		}
		cond := bson.D{{Key: op, Value: lower}}
		if opts.Prefix != "" {
			cond = append(cond, bson.E{Key: "$regex", Value: "^" + regexp.QuoteMeta(opts.Prefix)})
		}
		filter := bson.D{{Key: "filename", Value: cond}}
		if opts.Owner != "" {
			filter = append(filter, bson.E{Key: "metadata.owner", Value: opts.Owner})
		}
		want := int64(opts.Limit + 1 - len(entries))
		cur, err := b.files(bucket).Find(ctx, filter, options.Find().SetSort(newest).SetLimit(want+8))
		if err != nil {
			return store.Page{}, fmt.Errorf("gridfs: list %s: %w", bucket, err)
		}
		var docs []filesDoc
		if err := cur.All(ctx, &docs); err != nil {
			return store.Page{}, fmt.Errorf("gridfs: list %s: %w", bucket, err)
		}
		requery := false
		for _, d := range docs {
			if d.Filename == lastFile {
				continue // an older revision
			}
			rest := strings.TrimPrefix(d.Filename, opts.Prefix)
			if i := strings.Index(rest, opts.Delimiter); opts.Delimiter != "" && i >= 0 {
				p := opts.Prefix + rest[:i+1]
				entries = append(entries, store.Entry{Prefix: p})
				lower, strict, requery = prefixEnd(p), false, true
				break
			}
			file := d.file(bucket)
			entries = append(entries, store.Entry{File: &file})
			lastFile = d.Filename
			lower, strict = d.Filename, true
			if len(entries) > opts.Limit {
				break
			}
		}
		if !requery && int64(len(docs)) < want+8 {
			break
		}
	}
	page := store.Page{Entries: entries}
	if len(entries) > opts.Limit {
		page.Entries, page.More = entries[:opts.Limit], true
	}
	return page, nil
}

// prefixEnd returns the smallest string above every string starting with
// p, for p ending in an ASCII byte.
func prefixEnd(p string) string {
	return p[:len(p)-1] + string(p[len(p)-1]+1)
}

// Move implements store.Backend.
func (b *Backend) Move(ctx context.Context, bucket, from, to string, overwrite bool) (store.File, error) {
	if err := validate(bucket, from); err != nil {
		return store.File{}, err
	}
	if err := store.ValidatePath(to); err != nil {
		return store.File{}, err
	}
	d, err := b.findPath(ctx, bucket, from)
	if err != nil {
		return store.File{}, err
	}
	if from == to {
		return d.file(bucket), nil
	}
	target, err := b.findPath(ctx, bucket, to)
	switch {
	case err == nil && !overwrite:
		return store.File{}, errs.E(errs.Conflict, "%s/%s already exists", bucket, to)
	case err == nil:
		if err := b.deleteDoc(ctx, bucket, target.ID); err != nil {
			return store.File{}, err
		}
	case errs.CodeOf(err) != errs.NotFound:
		return store.File{}, err
	}
	if _, err := b.files(bucket).UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "filename", Value: to}}}}); err != nil {
		return store.File{}, fmt.Errorf("gridfs: move %s/%s: %w", bucket, from, err)
	}
	d.Filename = to
	// Older revisions of the source path would otherwise resurface.
	if err := b.dropOlderRevisions(ctx, bucket, filesDoc{ID: bson.NilObjectID, Filename: from}); err != nil {
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
	return b.deleteDoc(ctx, bucket, d.ID)
}

// deleteDoc removes the files document first (the file disappears), then
// its chunks.
func (b *Backend) deleteDoc(ctx context.Context, bucket string, id bson.ObjectID) error {
	if _, err := b.files(bucket).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("gridfs: delete %s.files %s: %w", bucket, id.Hex(), err)
	}
	if _, err := b.chunks(bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}}); err != nil {
		return fmt.Errorf("gridfs: delete %s.chunks of %s: %w", bucket, id.Hex(), err)
	}
	return nil
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

// sum counts the files of bucket (of owner, when set) and their bytes. It
// adds up in Go over a projection of "length": FerretDB's $group does not
// sum int64 fields.
func (b *Backend) sum(ctx context.Context, bucket, owner string) (int64, int64, error) {
	filter := bson.D{}
	if owner != "" {
		filter = bson.D{{Key: "metadata.owner", Value: owner}}
	}
	cur, err := b.files(bucket).Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "length", Value: 1}, {Key: "_id", Value: 0}}))
	if err != nil {
		return 0, 0, fmt.Errorf("gridfs: sum %s: %w", bucket, err)
	}
	defer cur.Close(ctx)
	var files, bytes int64
	for cur.Next(ctx) {
		var d struct {
			Length int64 `bson:"length"`
		}
		if err := cur.Decode(&d); err != nil {
			return 0, 0, fmt.Errorf("gridfs: sum %s: %w", bucket, err)
		}
		files++
		bytes += d.Length
	}
	if err := cur.Err(); err != nil {
		return 0, 0, fmt.Errorf("gridfs: sum %s: %w", bucket, err)
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
