package gridfs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/platform/errs"
)

// The id index. A file's id names no bucket, and every bucket is three
// collections of its own, so finding a file by id once meant asking every
// bucket in turn: a lookup cost as many queries as there were buckets. The
// collection idsCollection maps each file's id to its bucket ({_id: <file
// id>, bucket: <name>}): a lookup is one query by _id there and one in the
// bucket's files. A record is written when its file is published (before
// its path shows) and removed when the file is deleted; a record whose file
// is gone (a delete cut short) is dropped when met. The files written before
// the index existed are indexed once, at start or at the first lookup,
// under a lock (the marker document idsMarker says it is done; delete it to
// have the index built again, which is idempotent). A file another GridFS
// writer added (pymongo, mongofiles) has no record: a lookup that misses
// asks every bucket at most once per ReconcileEvery, and records what it
// finds.

// idsCollection holds the id index.
const idsCollection = "filestorage_ids"

// idsMarker is the _id of the id index's marker document (a string: no
// file id is one).
const idsMarker = "/built"

// idDoc is a record of the id index.
type idDoc struct {
	ID     bson.ObjectID `bson:"_id"`
	Bucket string        `bson:"bucket"`
}

func (b *Backend) ids() *mongo.Collection { return b.db.Collection(idsCollection) }

// recordID points the file id at bucket in the id index: one insert (a
// file's id is new; a record there already, of a completion retried or a
// build meanwhile, is the same record).
func (b *Backend) recordID(ctx context.Context, bucket string, id bson.ObjectID) error {
	_, err := b.ids().InsertOne(ctx, idDoc{ID: id, Bucket: bucket})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("gridfs: record the bucket of %s: %w", id.Hex(), err)
	}
	return nil
}

// forgetID removes the id index's record of the file id of bucket.
func (b *Backend) forgetID(ctx context.Context, bucket string, id bson.ObjectID) error {
	if _, err := b.ids().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bucket", Value: bucket}}); err != nil {
		return fmt.Errorf("gridfs: forget the bucket of %s: %w", id.Hex(), err)
	}
	return nil
}

// findID returns the file id and its bucket: through the id index, else
// (a file another writer added) through every bucket, at most once per
// ReconcileEvery.
func (b *Backend) findID(ctx context.Context, id string) (filesDoc, string, error) {
	notFound := errs.E(errs.NotFound, "no file with id %q", id)
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return filesDoc{}, "", notFound
	}
	if err := b.EnsureIDIndex(ctx); err != nil {
		return filesDoc{}, "", err
	}
	var rec idDoc
	err = b.ids().FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(&rec)
	switch {
	case err == nil:
		d, err := b.fileByID(ctx, rec.Bucket, oid)
		if err == nil || errs.CodeOf(err) != errs.NotFound {
			return d, rec.Bucket, err
		}
		// Its file is gone: a delete was cut short.
		if err := b.forgetID(ctx, rec.Bucket, oid); err != nil {
			return filesDoc{}, "", err
		}
	case !errors.Is(err, mongo.ErrNoDocuments):
		return filesDoc{}, "", fmt.Errorf("gridfs: find the bucket of %s: %w", id, err)
	}
	d, bucket, found, err := b.scanForID(ctx, oid)
	if err != nil || !found {
		if err == nil {
			err = notFound
		}
		return filesDoc{}, "", err
	}
	return d, bucket, nil
}

// scanForID looks for the file id in every bucket and records the one it
// is in, unless it did so less than ReconcileEvery ago (or never does).
func (b *Backend) scanForID(ctx context.Context, id bson.ObjectID) (filesDoc, string, bool, error) {
	if b.reconcileEvery < 0 {
		return filesDoc{}, "", false, nil
	}
	now := time.Now()
	b.mu.Lock()
	if !b.idScanned.IsZero() && now.Sub(b.idScanned) < b.reconcileEvery {
		b.mu.Unlock()
		return filesDoc{}, "", false, nil
	}
	b.idScanned = now
	b.mu.Unlock()
	buckets, err := b.bucketNames(ctx)
	if err != nil {
		return filesDoc{}, "", false, err
	}
	for _, bucket := range buckets {
		d, err := b.fileByID(ctx, bucket, id)
		switch {
		case err == nil:
			return d, bucket, true, b.recordID(ctx, bucket, id)
		case errs.CodeOf(err) != errs.NotFound:
			return filesDoc{}, "", false, err
		}
	}
	return filesDoc{}, "", false, nil
}

// EnsureIDIndex builds the id index of the files written before it
// existed, once per database (and checks for it once per process). It
// reads every bucket's files collection once: the service runs it in the
// background at start; a lookup by id runs it too when it is not done.
func (b *Backend) EnsureIDIndex(ctx context.Context) error {
	b.mu.Lock()
	done := b.idsIndexed
	b.mu.Unlock()
	if done {
		return nil
	}
	has := func() (bool, error) {
		err := b.ids().FindOne(ctx, bson.D{{Key: "_id", Value: idsMarker}}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("gridfs: id index: %w", err)
		}
		return true, nil
	}
	ok, err := has()
	if err == nil && !ok {
		var unlock func()
		if unlock, err = b.lock(ctx, idsMarker); err != nil {
			return err
		}
		if ok, err = has(); err == nil && !ok {
			err = b.buildIDIndex(ctx)
		}
		unlock()
	}
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.idsIndexed = true
	b.mu.Unlock()
	return nil
}

// buildIDIndex records the bucket of every file of every bucket (reading
// each files collection once, ids only) and then writes the marker. Files
// recorded already, by a write meanwhile or a build cut short, stay as
// they are.
func (b *Backend) buildIDIndex(ctx context.Context) error {
	buckets, err := b.bucketNames(ctx)
	if err != nil {
		return err
	}
	for _, bucket := range buckets {
		cur, err := b.files(bucket).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return fmt.Errorf("gridfs: read the ids of %s: %w", bucket, err)
		}
		var docs []struct {
			ID bson.ObjectID `bson:"_id"`
		}
		err = cur.All(ctx, &docs)
		if err != nil {
			return fmt.Errorf("gridfs: read the ids of %s: %w", bucket, err)
		}
		batch := make([]any, 0, 512)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			_, err := b.ids().InsertMany(ctx, batch, options.InsertMany().SetOrdered(false))
			batch = batch[:0]
			if err != nil && !onlyDuplicates(err) {
				return fmt.Errorf("gridfs: index the ids of %s: %w", bucket, err)
			}
			return nil
		}
		for _, d := range docs {
			batch = append(batch, idDoc{ID: d.ID, Bucket: bucket})
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	_, err = b.ids().InsertOne(ctx, bson.D{{Key: "_id", Value: idsMarker}, {Key: "built", Value: time.Now().UTC().Truncate(time.Millisecond)}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("gridfs: mark the id index: %w", err)
	}
	return nil
}

// onlyDuplicates reports whether err is an unordered insert's error whose
// every failed document was a duplicate key: those records exist already.
func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}
