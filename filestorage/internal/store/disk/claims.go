package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// claims is an owner's file of claimed buckets.
type claims struct {
	Owner   string   `json:"owner"`
	Buckets []string `json:"buckets"`
}

// claimName is the file of owner's claims: a digest, so that no character
// of the owner matters.
func claimName(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return claimDir + "/" + hex.EncodeToString(sum[:])
}

func (b *Backend) readClaims(owner string) (claims, error) {
	c := claims{Owner: owner}
	data, err := b.root.ReadFile(claimName(owner))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("disk: read the buckets of %q: %w", owner, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("disk: the buckets of %q: %w", owner, err)
	}
	return c, nil
}

// ClaimBucket implements store.Backend: at the limit, a bucket the owner
// holds files in (written before claims existed) is claimed still; any
// other is refused, and no directory is made for it.
func (b *Backend) ClaimBucket(ctx context.Context, bucket, owner string, max int) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	if owner == "" {
		return errs.E(errs.Invalid, "a bucket is claimed by an owner")
	}
	b.claimMu.Lock()
	defer b.claimMu.Unlock()
	c, err := b.readClaims(owner)
	if err != nil || slices.Contains(c.Buckets, bucket) {
		return err
	}
	if max > 0 && len(c.Buckets) >= max {
		page, err := b.List(ctx, bucket, store.ListOptions{Owner: owner, Limit: 1})
		if err != nil {
			return err
		}
		if len(page.Entries) == 0 {
			return store.ErrBucketLimit
		}
	}
	c.Buckets = append(c.Buckets, bucket)
	slices.Sort(c.Buckets)
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("disk: encode the buckets of %q: %w", owner, err)
	}
	return b.writeAtomic(claimName(owner), data)
}
