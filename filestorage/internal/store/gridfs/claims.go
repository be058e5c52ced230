package gridfs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// claimsCollection holds the buckets each owner has claimed
// (store.Backend.ClaimBucket): one document per owner, {_id: <owner>,
// buckets: [<name>…]}, read by _id.
const claimsCollection = "filestorage_bucket_claims"

// claimsLockPrefix starts the lock key of an owner's claims ("/…" is no
// bucket's lock: those start with the bucket's name).
const claimsLockPrefix = "/claims/"

type claimsDoc struct {
	Owner   string   `bson:"_id"`
	Buckets []string `bson:"buckets"`
}

func (b *Backend) claims(ctx context.Context, owner string) (claimsDoc, error) {
	d := claimsDoc{Owner: owner}
	err := b.db.Collection(claimsCollection).FindOne(ctx, bson.D{{Key: "_id", Value: owner}}).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return d, fmt.Errorf("gridfs: read the buckets of %q: %w", owner, err)
	}
	return d, nil
}

// ClaimBucket implements store.Backend: one lookup when the bucket is
// claimed already; else, under the owner's lock, the claim is added, or
// refused (creating nothing) when the owner has max and holds no file in
// the bucket (files written before claims existed count as a claim).
func (b *Backend) ClaimBucket(ctx context.Context, bucket, owner string, max int) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	if owner == "" {
		return errs.E(errs.Invalid, "a bucket is claimed by an owner")
	}
	d, err := b.claims(ctx, owner)
	if err != nil || slices.Contains(d.Buckets, bucket) {
		return err
	}
	unlock, err := b.lock(ctx, claimsLockPrefix+owner)
	if err != nil {
		return err
	}
	defer unlock()
	if d, err = b.claims(ctx, owner); err != nil || slices.Contains(d.Buckets, bucket) {
		return err
	}
	if max > 0 && len(d.Buckets) >= max {
		// Only the top folder of an existing bucket is read: a bucket
		// that does not exist gets no collection.
		files, _, err := b.sum(ctx, bucket, owner)
		if err != nil {
			return err
		}
		if files == 0 {
			return store.ErrBucketLimit
		}
	}
	d.Buckets = append(d.Buckets, bucket)
	slices.Sort(d.Buckets)
	_, err = b.db.Collection(claimsCollection).ReplaceOne(ctx, bson.D{{Key: "_id", Value: owner}}, d, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("gridfs: claim %s for %q: %w", bucket, owner, err)
	}
	return nil
}
