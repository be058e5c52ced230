package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// uploadDoc is a resumable upload in uploadsCollection, or the journal of a
// direct (one-shot) write in progress. Its chunks are written into
// <bucket>.chunks under files_id = _id, so completing it only inserts the
// files document.
type uploadDoc struct {
	ID          bson.ObjectID     `bson:"_id"`
	Bucket      string            `bson:"bucket"`
	Path        string            `bson:"path"`
	Owner       string            `bson:"owner"`
	ContentType string            `bson:"contentType,omitempty"`
	Custom      map[string]string `bson:"custom,omitempty"`
	Length      int64             `bson:"length"`
	Offset      int64             `bson:"offset"`
	ChunkSize   int32             `bson:"chunkSize"`
	Created     time.Time         `bson:"created"`
	Expires     time.Time         `bson:"expires"`
	HashState   []byte            `bson:"hashState"`
	// Tail holds the bytes past the last whole chunk written: they become
	// a chunk once the next part completes it (or the upload ends).
	Tail []byte `bson:"tail"`
	// Direct marks the journal of a one-shot write (Put): no tus client
	// sees it; the sweep drops its chunks when it expires uncommitted.
	Direct bool `bson:"direct,omitempty"`
	// ChunkIDs is chunkIDScheme when the upload's chunks have derived
	// _ids (uploads begun before they had are written on as they began).
	ChunkIDs string `bson:"chunkIds,omitempty"`
	// Held says the write holds a reservation of its owner's quota under
	// its id (quota.go), which its commit or its deletion releases.
	Held bool `bson:"held,omitempty"`
}

func (d uploadDoc) upload() store.Upload {
	return store.Upload{
		ID: d.ID.Hex(), Bucket: d.Bucket, Path: d.Path, Owner: d.Owner, ContentType: d.ContentType, Custom: d.Custom,
		Length: d.Length, Offset: d.Offset, Created: d.Created.UTC(), Expires: d.Expires.UTC(), HashState: d.HashState,
		Pending: d.Tail,
	}
}

func (b *Backend) uploads() *mongo.Collection { return b.db.Collection(uploadsCollection) }

// CreateUpload implements store.Backend.
func (b *Backend) CreateUpload(ctx context.Context, u store.Upload) (store.Upload, error) {
	if err := validate(u.Bucket, u.Path); err != nil {
		return store.Upload{}, err
	}
	if err := b.ensureBucket(ctx, u.Bucket); err != nil {
		return store.Upload{}, err
	}
	if err := b.ensureFolderIndex(ctx, u.Bucket); err != nil {
		return store.Upload{}, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	d := uploadDoc{
		ID: bson.NewObjectID(), Bucket: u.Bucket, Path: u.Path, Owner: u.Owner, ContentType: u.ContentType, Custom: u.Custom,
		Length: u.Length, ChunkSize: b.chunkSize, Created: now, Expires: now.Add(b.uploadTTL), ChunkIDs: chunkIDScheme,
	}
	if u.Quota > 0 && u.Length > 0 {
		h := store.Hold{ID: d.ID.Hex(), Bytes: u.Length, Expires: d.Expires}
		if _, err := b.grow(ctx, u.Owner, h, u.Length, u.Quota); err != nil {
			return store.Upload{}, err
		}
		d.Held = true
	}
	if _, err := b.uploads().InsertOne(ctx, d); err != nil {
		if d.Held {
			b.releaseHold(ctx, d.Owner, d.ID.Hex())
		}
		return store.Upload{}, fmt.Errorf("gridfs: create upload: %w", err)
	}
	return d.upload(), nil
}

// getUpload returns the resumable upload id; direct writes' journals are
// not uploads to anyone but the sweep (DeleteUpload).
func (b *Backend) getUpload(ctx context.Context, id string) (uploadDoc, error) {
	d, err := b.getJournal(ctx, id)
	if err == nil && d.Direct {
		return uploadDoc{}, errs.E(errs.NotFound, "no upload %q", id)
	}
	return d, err
}

func (b *Backend) getJournal(ctx context.Context, id string) (uploadDoc, error) {
	var d uploadDoc
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return d, errs.E(errs.NotFound, "no upload %q", id)
	}
	err = b.uploads().FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return d, errs.E(errs.NotFound, "no upload %q", id)
	}
	if err != nil {
		return d, fmt.Errorf("gridfs: get upload %s: %w", id, err)
	}
	return d, nil
}

// GetUpload implements store.Backend.
func (b *Backend) GetUpload(ctx context.Context, id string) (store.Upload, error) {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return store.Upload{}, err
	}
	return d.upload(), nil
}

// leaseTTL is how long an append holds its upload without recording
// progress; every recorded batch renews it.
const leaseTTL = 2 * time.Minute

// lease takes the upload for one append, across replicas: the upload
// document's lock field names the holder until lockUntil.
func (b *Backend) lease(ctx context.Context, id bson.ObjectID) (string, error) {
	holder := bson.NewObjectID().Hex()
	now := time.Now()
	res, err := b.uploads().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "lockUntil", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "lockUntil", Value: bson.D{{Key: "$lt", Value: now}}}},
		}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lock", Value: holder}, {Key: "lockUntil", Value: now.Add(leaseTTL)}}}})
	if err != nil {
		return "", fmt.Errorf("gridfs: lock upload %s: %w", id.Hex(), err)
	}
	if res.MatchedCount == 0 {
		return "", store.ErrUploadLocked
	}
	return holder, nil
}

func (b *Backend) release(ctx context.Context, id bson.ObjectID, holder string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = b.uploads().UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "lock", Value: holder}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "lock", Value: ""}, {Key: "lockUntil", Value: ""}}}})
}

// AppendUpload implements store.Backend.
func (b *Backend) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, verify func() error) (store.Upload, error) {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return store.Upload{}, err
	}
	holder, err := b.lease(ctx, d.ID)
	if err != nil {
		return d.upload(), err
	}
	defer b.release(ctx, d.ID, holder)
	if d, err = b.getUpload(ctx, id); err != nil {
		return store.Upload{}, err
	}
	if offset != d.Offset {
		return d.upload(), errs.E(errs.Conflict, "upload offset is %d, not %d", d.Offset, offset)
	}
	h, err := store.RestoreHash(d.HashState)
	if err != nil {
		return store.Upload{}, err
	}
	base := d.Offset - int64(len(d.Tail))
	n := int32(base / int64(d.ChunkSize))
	lr := &store.LimitedReader{R: r, N: d.Length - d.Offset, Hash: h}
	bw := &Backend{db: b.db, chunkSize: d.ChunkSize}
	derived := d.ChunkIDs == chunkIDScheme

	var mu sync.Mutex // d is recorded from the writer's goroutine
	record := func(ctx context.Context, offset int64, state, tail []byte) error {
		res, err := b.uploads().UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}, {Key: "lock", Value: holder}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "offset", Value: offset}, {Key: "hashState", Value: state}, {Key: "tail", Value: tail},
			{Key: "lockUntil", Value: time.Now().Add(leaseTTL)},
		}}})
		if err != nil {
			return fmt.Errorf("gridfs: record upload %s offset: %w", id, err)
		}
		if res.MatchedCount == 0 {
			return fmt.Errorf("gridfs: upload %s: lost its lock (stalled longer than %s)", id, leaseTTL)
		}
		mu.Lock()
		d.Offset, d.HashState, d.Tail = offset, state, tail
		mu.Unlock()
		return nil
	}
	type state struct {
		offset     int64
		hash, tail []byte
		err        error
	}
	var last state
	expect := int64(0)
	if d.Length >= 0 {
		expect = int64(len(d.Tail)) + d.Length - d.Offset
	}
	_, _, werr := bw.writeChunks(ctx, d.Bucket, d.ID, n, d.Tail, lr, expect, true, derived, func(written int64, tail []byte) func(context.Context) error {
		st := state{offset: base + written + int64(len(tail)), tail: tail}
		st.hash, st.err = store.HashState(lr.Hash)
		if verify != nil {
			last = st // recorded only once verified
			return nil
		}
		return func(ctx context.Context) error {
			if st.err != nil {
				return st.err
			}
			return record(ctx, st.offset, st.hash, st.tail)
		}
	})
	if werr == nil && verify != nil {
		if werr = last.err; werr == nil {
			if werr = verify(); werr == nil {
				werr = record(ctx, last.offset, last.hash, last.tail)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return d.upload(), werr
}

// CompleteUpload implements store.Backend. An upload whose path another
// owner's file took meanwhile (replace is ReplaceOwn) is deleted with its
// data; the file at the path stays as it was.
func (b *Backend) CompleteUpload(ctx context.Context, id string, replace store.ReplacePolicy) (store.File, error) {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return store.File{}, err
	}
	if d.Offset != d.Length {
		return store.File{}, errs.E(errs.Conflict, "upload %s holds %d of %d bytes", id, d.Offset, d.Length)
	}
	if len(d.Tail) > 0 {
		n := int32((d.Length - int64(len(d.Tail))) / int64(d.ChunkSize))
		derived := d.ChunkIDs == chunkIDScheme
		if err := b.insertChunks(ctx, d.Bucket, d.ID, n, []any{chunkDoc(d.ID, n, d.Tail, derived)}, derived); err != nil {
			return store.File{}, err
		}
	}
	h, err := store.RestoreHash(d.HashState)
	if err != nil {
		return store.File{}, err
	}
	fd := filesDoc{
		ID: d.ID, Length: d.Length, ChunkSize: d.ChunkSize, UploadDate: time.Now().UTC().Truncate(time.Millisecond), Filename: d.Path,
		Metadata: &fileMeta{SHA256: fmt.Sprintf("%x", h.Sum(nil)), Owner: d.Owner, ContentType: d.ContentType, Custom: d.Custom,
			ChunkIDs: d.ChunkIDs},
	}
	if _, err := b.files(d.Bucket).InsertOne(ctx, fd); err != nil && !mongo.IsDuplicateKeyError(err) {
		return store.File{}, fmt.Errorf("gridfs: complete upload %s: %w", id, err)
	}
	if err := b.ensureFolderIndex(ctx, d.Bucket); err != nil {
		return store.File{}, err
	}
	rules := commitRules{replace: replace}
	if d.Held {
		rules.hold = d.ID.Hex()
	}
	if err := b.commit(ctx, d.Bucket, fd, rules); err != nil {
		if errs.CodeOf(err) == errs.Conflict {
			// The path is another owner's: the upload ends here.
			return store.File{}, errors.Join(err, b.dropLoser(ctx, d, fd))
		}
		return store.File{}, err
	}
	if _, err := b.uploads().DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}}); err != nil {
		return store.File{}, fmt.Errorf("gridfs: forget upload %s: %w", id, err)
	}
	return fd.file(d.Bucket), nil
}

// dropLoser removes a completed upload that could not take its path: its
// files document and chunks, the upload and its hold.
func (b *Backend) dropLoser(ctx context.Context, d uploadDoc, fd filesDoc) error {
	ctx = context.WithoutCancel(ctx)
	if err := b.deleteData(ctx, d.Bucket, fd); err != nil {
		return err
	}
	if _, err := b.uploads().DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}}); err != nil {
		return fmt.Errorf("gridfs: forget upload %s: %w", d.ID.Hex(), err)
	}
	if d.Held {
		b.releaseHold(ctx, d.Owner, d.ID.Hex())
	}
	return nil
}

// DeleteUpload implements store.Backend. The chunks of an upload that did
// complete belong to its file and stay.
func (b *Backend) DeleteUpload(ctx context.Context, id string) error {
	d, err := b.getJournal(ctx, id)
	if err != nil {
		return err
	}
	if _, err := b.uploads().DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}}); err != nil {
		return fmt.Errorf("gridfs: delete upload %s: %w", id, err)
	}
	if d.Held {
		b.releaseHold(ctx, d.Owner, d.ID.Hex())
	}
	n, err := b.files(d.Bucket).CountDocuments(ctx, bson.D{{Key: "_id", Value: d.ID}})
	if err != nil {
		return fmt.Errorf("gridfs: delete upload %s: %w", id, err)
	}
	if n == 0 {
		if _, err := b.chunks(d.Bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: d.ID}}); err != nil {
			return fmt.Errorf("gridfs: delete chunks of upload %s: %w", id, err)
		}
	}
	return nil
}

// ExpiredUploads implements store.Backend.
func (b *Backend) ExpiredUploads(ctx context.Context, t time.Time) ([]string, error) {
	cur, err := b.uploads().Find(ctx, bson.D{{Key: "expires", Value: bson.D{{Key: "$lt", Value: t}}}})
	if err != nil {
		return nil, fmt.Errorf("gridfs: find expired uploads: %w", err)
	}
	var docs []uploadDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("gridfs: find expired uploads: %w", err)
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID.Hex()
	}
	return ids, nil
}
