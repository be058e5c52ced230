package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
)

// The quota (see package store). An owner's used bytes are what the folder
// index already keeps: the top folder of each bucket carries each owner's
// bytes below it (Usage), kept at every commit, replace, move and delete.
// The holds of an owner's writes in progress live in one document per
// owner in quotaCollection, changed under the owner's lock (a document in
// locksCollection, as the folders are: FerretDB's updates are not atomic).
// A reservation checks used + holds + new <= quota and adds its hold under
// that lock; a commit of a write with a hold publishes the file and drops
// the hold under it too, so no reservation of the same owner sees the one
// without the other.

// quotaCollection holds each owner's holds.
const quotaCollection = "filestorage_quota"

// quotaLockPrefix starts the lock key of an owner's quota document ("/…"
// is no bucket's name, which the folder locks start with).
const quotaLockPrefix = "/quota/"

// holdDoc is a store.Hold as stored.
type holdDoc struct {
	ID       string    `bson:"id"`
	Bytes    int64     `bson:"bytes"`
	Credit   int64     `bson:"credit,omitempty"`
	CreditID string    `bson:"creditId,omitempty"`
	Expires  time.Time `bson:"expires"`
}

type quotaDoc struct {
	Owner string    `bson:"_id"`
	Holds []holdDoc `bson:"holds"`
}

func (b *Backend) quotas() *mongo.Collection { return b.db.Collection(quotaCollection) }

// withHolds runs fn on owner's holds (the expired ones pruned) under the
// owner's lock, and stores what it returns unless it fails.
func (b *Backend) withHolds(ctx context.Context, owner string, fn func(store.Holds) (store.Holds, error)) error {
	unlock, err := b.lock(ctx, quotaLockPrefix+owner)
	if err != nil {
		return err
	}
	defer unlock()
	var d quotaDoc
	err = b.quotas().FindOne(ctx, bson.D{{Key: "_id", Value: owner}}).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("gridfs: read the quota of %q: %w", owner, err)
	}
	hs := make(store.Holds, 0, len(d.Holds)+1)
	for _, h := range d.Holds {
		hs = append(hs, store.Hold{ID: h.ID, Bytes: h.Bytes, Credit: h.Credit, CreditID: h.CreditID, Expires: h.Expires})
	}
	before := len(hs)
	hs = hs.Prune(time.Now())
	pruned := len(hs) != before
	out, err := fn(hs)
	if err != nil {
		if pruned {
			err = errors.Join(err, b.saveHolds(ctx, owner, hs))
		}
		return err
	}
	return b.saveHolds(ctx, owner, out)
}

// saveHolds stores owner's holds; none: the document goes.
func (b *Backend) saveHolds(ctx context.Context, owner string, hs store.Holds) error {
	id := bson.D{{Key: "_id", Value: owner}}
	var err error
	if len(hs) == 0 {
		_, err = b.quotas().DeleteOne(ctx, id)
	} else {
		d := quotaDoc{Owner: owner, Holds: make([]holdDoc, len(hs))}
		for i, h := range hs {
			d.Holds[i] = holdDoc{ID: h.ID, Bytes: h.Bytes, Credit: h.Credit, CreditID: h.CreditID, Expires: h.Expires.UTC()}
		}
		_, err = b.quotas().ReplaceOne(ctx, id, d, options.Replace().SetUpsert(true))
	}
	if err != nil {
		return fmt.Errorf("gridfs: write the quota of %q: %w", owner, err)
	}
	return nil
}

// grow has owner's hold h reserve at least need bytes (up to h.Bytes)
// within quota, and returns what it reserves.
func (b *Backend) grow(ctx context.Context, owner string, h store.Hold, need, quota int64) (int64, error) {
	var got int64
	err := b.withHolds(ctx, owner, func(hs store.Holds) (store.Holds, error) {
		used, err := b.Usage(ctx, owner)
		if err != nil {
			return hs, err
		}
		hs, got, err = hs.Grow(h, need, used, quota)
		return hs, err
	})
	return got, err
}

// releaseHold drops owner's hold id, on a context of its own (the
// request's may be what failed). Should it fail, the hold lapses when it
// expires.
func (b *Backend) releaseHold(ctx context.Context, owner, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = b.withHolds(ctx, owner, func(hs store.Holds) (store.Holds, error) {
		hs, _ = hs.Release(id)
		return hs, nil
	})
}

// reserveStream reserves req's SizeHint for the write id at once, and
// returns r wrapped to reserve more as more arrives. A replace of the
// owner's own file is credited with that file's size, looked up only when
// the quota has no room without it (most writes fit, and skip the read).
func (b *Backend) reserveStream(ctx context.Context, req store.PutRequest, id string, expires time.Time, r io.Reader) (io.Reader, error) {
	h := store.Hold{ID: id, Expires: expires}
	looked := req.Exclusive // an exclusive write replaces nothing
	grow := func(need int64) (int64, error) {
		var got int64
		err := b.withHolds(ctx, req.Owner, func(hs store.Holds) (store.Holds, error) {
			used, err := b.Usage(ctx, req.Owner)
			if err != nil {
				return hs, err
			}
			out, n, err := hs.Grow(h, need, used, req.Quota)
			if store.IsQuotaExceeded(err) && !looked {
				looked = true
				e, ok, lerr := b.indexLookup(ctx, req.Bucket, req.Path)
				if lerr != nil {
					return hs, lerr
				}
				if ok && e.Owner == req.Owner {
					h.Credit, h.CreditID = e.Size, e.ID.Hex()
					out, n, err = hs.Grow(h, need, used, req.Quota)
				}
			}
			got = n
			return out, err
		})
		return got, err
	}
	return store.ReserveStream(req, &h, r, grow)
}

// commitRules are what a commit checks and settles besides the write.
type commitRules struct {
	// exclusive: the path must be free.
	exclusive bool
	// replace: whose file at the path the write may replace.
	replace store.ReplacePolicy
	// quota, when positive: a commit whose hold does not cover it (its
	// credit was for a file no longer there) must fit the quota beside the
	// other holds.
	quota int64
	// hold, when set: the write's reservation, dropped by the commit.
	hold string
}

// commit publishes d at its path, checking in the same step (under the
// folder's lock) whose file it replaces, and settles its hold under its
// owner's quota lock. An error means d was not published.
func (b *Backend) commit(ctx context.Context, bucket string, d filesDoc, rules commitRules) error {
	owner := d.file(bucket).Owner
	check := func(hs store.Holds) func(prev *folderFile) error {
		return func(prev *folderFile) error {
			if prev != nil && rules.replace == store.ReplaceOwn && prev.Owner != owner {
				return store.ErrOwnerConflict(bucket, d.Filename)
			}
			if rules.hold == "" || rules.quota <= 0 {
				return nil
			}
			h, ok := hs.Find(rules.hold)
			if ok && (h.CreditID == "" || prev != nil && prev.ID.Hex() == h.CreditID) {
				return nil // the hold covers what the commit adds
			}
			used, err := b.Usage(ctx, owner)
			if err != nil {
				return err
			}
			added := d.Length
			if prev != nil && prev.Owner == owner {
				added -= prev.Size
			}
			return hs.CommitFits(rules.hold, used, added, rules.quota)
		}
	}
	if rules.hold == "" {
		return b.publish(ctx, bucket, d, rules.exclusive, check(nil))
	}
	published := false
	err := b.withHolds(ctx, owner, func(hs store.Holds) (store.Holds, error) {
		if err := b.publish(ctx, bucket, d, rules.exclusive, check(hs)); err != nil {
			return hs, err
		}
		published = true
		hs, _ = hs.Release(rules.hold)
		return hs, nil
	})
	if published {
		// The file is there: a hold that could not be dropped lapses
		// when it expires.
		return nil
	}
	return err
}
