package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// What a caller sees of files that are not theirs: nothing. Someone else's
// file, folder, upload or bucket is answered exactly as a missing one (404,
// the same code and message, no owner and no other path named), so no
// answer tells a caller that it exists. Writing to a path someone else's
// file holds cannot look like a missing path: it is a 409 whose message
// names no owner (store.ErrPathTaken). Admin callers see everything.

// noFileID is the answer for an id the caller has no file under.
func noFileID(id string) error { return errs.E(errs.NotFound, "no file with id %q", id) }

// noFilePath is the answer for a path the caller has no file at.
func noFilePath(bucket, p string) error { return errs.E(errs.NotFound, "no file %s/%s", bucket, p) }

// noFolder is the answer for a path the caller has neither a file at nor
// files under.
func noFolder(bucket, p string) error {
	return errs.E(errs.NotFound, "no file or folder %s/%s", bucket, p)
}

// noUpload is the answer for an upload id the caller has no upload under.
func noUpload(id string) error { return errs.E(errs.NotFound, "no upload %q", id) }

// noBucket is the answer for a bucket the caller holds no file in.
func noBucket(bucket string) error { return errs.E(errs.NotFound, "no bucket %q", bucket) }

// fileByID returns the file with id when c may see it; a missing file and
// someone else's are the same errs.NotFound.
func (a *API) fileByID(ctx context.Context, c Caller, id string) (store.File, error) {
	f, err := a.backend.Stat(ctx, id)
	switch {
	case err == nil && c.may(f):
		return f, nil
	case err == nil || errs.CodeOf(err) == errs.NotFound:
		return store.File{}, noFileID(id)
	}
	return store.File{}, err
}

// fileAtPath returns the file at bucket/p when c may see it; a missing
// file and someone else's are the same errs.NotFound.
func (a *API) fileAtPath(ctx context.Context, c Caller, bucket, p string) (store.File, error) {
	f, err := a.backend.StatPath(ctx, bucket, p)
	switch {
	case err == nil && c.may(f):
		return f, nil
	case err == nil || errs.CodeOf(err) == errs.NotFound:
		return store.File{}, noFilePath(bucket, p)
	}
	return store.File{}, err
}

// seesBucket reports whether bucket exists as far as c is concerned: for
// an admin, when it exists; for anyone else, when they hold a file in it.
func (a *API) seesBucket(ctx context.Context, c Caller, bucket string) (bool, error) {
	exists, err := a.backend.HasBucket(ctx, bucket)
	if err != nil || !exists || c.every(bucket) {
		return exists, err
	}
	page, err := a.backend.List(ctx, bucket, store.ListOptions{Owner: c.Owner, Limit: 1})
	if err != nil {
		return false, err
	}
	return len(page.Entries) > 0, nil
}

// BucketLimitCode is the error code of an upload refused because its owner
// already stores files in Limits.MaxBucketsPerOwner buckets (403).
const BucketLimitCode errs.Code = "bucket_limit"

// claimBucket counts bucket among the buckets c's owner stores files in,
// before anything is stored there: past Limits.MaxBucketsPerOwner it is a
// 403 with BucketLimitCode, and nothing is created. Admin callers (for
// themselves or on behalf of an owner) are not capped.
func (a *API) claimBucket(ctx context.Context, c Caller, bucket string) error {
	if c.Admin || c.Uncapped || a.limits.MaxBucketsPerOwner <= 0 {
		return nil
	}
	err := a.backend.ClaimBucket(ctx, bucket, c.Owner, a.limits.MaxBucketsPerOwner)
	if errors.Is(err, store.ErrBucketLimit) {
		return withStatus(http.StatusForbidden, errs.E(BucketLimitCode,
			"you store files in %d buckets, the most one owner may; store into one of them, not into a new bucket %q",
			a.limits.MaxBucketsPerOwner, bucket))
	}
	return err
}
