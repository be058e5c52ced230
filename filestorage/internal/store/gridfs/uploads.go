package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// uploadDoc is a resumable upload in uploadsCollection. Its chunks are
// written into <bucket>.chunks under files_id = _id, so completing it only
// inserts the files document.
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
}

func (d uploadDoc) upload() store.Upload {
	return store.Upload{
		ID: d.ID.Hex(), Bucket: d.Bucket, Path: d.Path, Owner: d.Owner, ContentType: d.ContentType, Custom: d.Custom,
		Length: d.Length, Offset: d.Offset, Created: d.Created.UTC(), Expires: d.Expires.UTC(), HashState: d.HashState,
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
	h, _ := store.RestoreHash(nil)
	state, err := store.HashState(h)
	if err != nil {
		return store.Upload{}, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	d := uploadDoc{
		ID: bson.NewObjectID(), Bucket: u.Bucket, Path: u.Path, Owner: u.Owner, ContentType: u.ContentType, Custom: u.Custom,
		Length: u.Length, ChunkSize: b.chunkSize, Created: now, Expires: now.Add(b.uploadTTL), HashState: state,
	}
	if _, err := b.uploads().InsertOne(ctx, d); err != nil {
		return store.Upload{}, fmt.Errorf("gridfs: create upload: %w", err)
	}
	return d.upload(), nil
}

func (b *Backend) getUpload(ctx context.Context, id string) (uploadDoc, error) {
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

// AppendUpload implements store.Backend.
func (b *Backend) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader) (store.Upload, error) {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return store.Upload{}, err
	}
	if offset != d.Offset {
		return d.upload(), errs.E(errs.Conflict, "upload offset is %d, not %d", d.Offset, offset)
	}
	h, err := store.RestoreHash(d.HashState)
	if err != nil {
		return store.Upload{}, err
	}
	cs := int64(d.ChunkSize)
	n := int32(d.Offset / cs)
	// Chunks past the recorded offset are left-overs of a write that
	// failed before it was recorded.
	if _, err := b.chunks(d.Bucket).DeleteMany(ctx, bson.D{{Key: "files_id", Value: d.ID}, {Key: "n", Value: bson.D{{Key: "$gt", Value: n}}}}); err != nil {
		return store.Upload{}, fmt.Errorf("gridfs: clean upload %s: %w", id, err)
	}
	var head []byte
	if d.Offset%cs != 0 {
		var c chunk
		if err := b.chunks(d.Bucket).FindOne(ctx, bson.D{{Key: "files_id", Value: d.ID}, {Key: "n", Value: n}}).Decode(&c); err != nil {
			return store.Upload{}, fmt.Errorf("gridfs: read partial chunk of upload %s: %w", id, err)
		}
		head = c.Data[:d.Offset%cs]
	}
	base := d.Offset - int64(len(head))
	lr := &store.LimitedReader{R: r, N: d.Length - d.Offset, Hash: h}
	bw := &Backend{db: b.db, chunkSize: d.ChunkSize}
	_, werr := bw.writeChunks(ctx, d.Bucket, d.ID, n, head, lr, func(ctx context.Context, written int64) error {
		state, err := store.HashState(lr.Hash)
		if err != nil {
			return err
		}
		d.Offset = base + written
		d.HashState = state
		_, err = b.uploads().UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "offset", Value: d.Offset}, {Key: "hashState", Value: state}}}})
		if err != nil {
			return fmt.Errorf("gridfs: record upload %s offset: %w", id, err)
		}
		return nil
	})
	return d.upload(), werr
}

// RewindUpload implements store.Backend. The data past offset is dropped by
// the next append.
func (b *Backend) RewindUpload(ctx context.Context, id string, offset int64, hashState []byte) error {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return err
	}
	if offset > d.Offset {
		return errs.E(errs.Invalid, "cannot rewind upload %s forward", id)
	}
	_, err = b.uploads().UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "offset", Value: offset}, {Key: "hashState", Value: hashState}}}})
	if err != nil {
		return fmt.Errorf("gridfs: rewind upload %s: %w", id, err)
	}
	return nil
}

// CompleteUpload implements store.Backend.
func (b *Backend) CompleteUpload(ctx context.Context, id string) (store.File, error) {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return store.File{}, err
	}
	if d.Offset != d.Length {
		return store.File{}, errs.E(errs.Conflict, "upload %s holds %d of %d bytes", id, d.Offset, d.Length)
	}
	h, err := store.RestoreHash(d.HashState)
	if err != nil {
		return store.File{}, err
	}
	fd := filesDoc{
		ID: d.ID, Length: d.Length, ChunkSize: d.ChunkSize, UploadDate: time.Now().UTC().Truncate(time.Millisecond), Filename: d.Path,
		Metadata: &fileMeta{SHA256: fmt.Sprintf("%x", h.Sum(nil)), Owner: d.Owner, ContentType: d.ContentType, Custom: d.Custom},
	}
	if _, err := b.files(d.Bucket).InsertOne(ctx, fd); err != nil && !mongo.IsDuplicateKeyError(err) {
		return store.File{}, fmt.Errorf("gridfs: complete upload %s: %w", id, err)
	}
	if err := b.dropOlderRevisions(ctx, d.Bucket, fd); err != nil {
		return store.File{}, err
	}
	if _, err := b.uploads().DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}}); err != nil {
		return store.File{}, fmt.Errorf("gridfs: forget upload %s: %w", id, err)
	}
	return fd.file(d.Bucket), nil
}

// DeleteUpload implements store.Backend. The chunks of an upload that did
// complete belong to its file and stay.
func (b *Backend) DeleteUpload(ctx context.Context, id string) error {
	d, err := b.getUpload(ctx, id)
	if err != nil {
		return err
	}
	if _, err := b.uploads().DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}}); err != nil {
		return fmt.Errorf("gridfs: delete upload %s: %w", id, err)
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
