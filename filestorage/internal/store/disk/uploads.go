package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

type uploadState struct {
	ID          string            `json:"id"`
	Bucket      string            `json:"bucket"`
	Path        string            `json:"path"`
	Owner       string            `json:"owner"`
	ContentType string            `json:"content_type,omitempty"`
	Custom      map[string]string `json:"custom,omitempty"`
	Length      int64             `json:"length"`
	Offset      int64             `json:"offset"`
	Created     time.Time         `json:"created"`
	Expires     time.Time         `json:"expires"`
	HashState   []byte            `json:"hash_state"`
	// Reserved is the bytes the upload holds of its owner's quota (its
	// Length, or 0 without a quota).
	Reserved int64 `json:"reserved,omitempty"`
}

func (s uploadState) upload() store.Upload {
	return store.Upload{ID: s.ID, Bucket: s.Bucket, Path: s.Path, Owner: s.Owner, ContentType: s.ContentType, Custom: s.Custom,
		Length: s.Length, Offset: s.Offset, Created: s.Created, Expires: s.Expires, HashState: s.HashState}
}

func stateName(id string) string { return upDir + "/" + id + ".json" }
func dataName(id string) string  { return upDir + "/" + id + ".data" }

func (b *Backend) saveState(s uploadState) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("disk: encode upload %s: %w", s.ID, err)
	}
	return b.writeAtomic(stateName(s.ID), data)
}

func (b *Backend) loadState(id string) (uploadState, error) {
	var s uploadState
	if !validID(id) {
		return s, errs.E(errs.NotFound, "no upload %q", id)
	}
	data, err := b.root.ReadFile(stateName(id))
	if errors.Is(err, fs.ErrNotExist) {
		return s, errs.E(errs.NotFound, "no upload %q", id)
	}
	if err != nil {
		return s, fmt.Errorf("disk: read upload %s: %w", id, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("disk: upload %s: %w", id, err)
	}
	return s, nil
}

// CreateUpload implements store.Backend.
func (b *Backend) CreateUpload(_ context.Context, u store.Upload) (store.Upload, error) {
	if err := validate(u.Bucket, u.Path); err != nil {
		return store.Upload{}, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := uploadState{ID: newID(), Bucket: u.Bucket, Path: u.Path, Owner: u.Owner, ContentType: u.ContentType, Custom: u.Custom,
		Length: u.Length, Created: now, Expires: now.Add(b.uploadTTL)}
	if u.Quota > 0 && u.Length > 0 {
		if _, err := b.grow(u.Owner, store.Hold{ID: s.ID, Bytes: u.Length}, u.Length, u.Quota); err != nil {
			return store.Upload{}, err
		}
		s.Reserved = u.Length
	}
	fail := func(err error) (store.Upload, error) {
		if s.Reserved > 0 {
			b.release(s.Owner, s.ID)
		}
		return store.Upload{}, err
	}
	f, err := b.root.OpenFile(dataName(s.ID), os.O_CREATE|os.O_EXCL|os.O_WRONLY, fileMode)
	if err != nil {
		return fail(fmt.Errorf("disk: create upload data: %w", err))
	}
	_ = f.Close()
	if err := b.saveState(s); err != nil {
		_ = b.root.Remove(dataName(s.ID))
		return fail(err)
	}
	return s.upload(), nil
}

// GetUpload implements store.Backend.
func (b *Backend) GetUpload(_ context.Context, id string) (store.Upload, error) {
	s, err := b.loadState(id)
	if err != nil {
		return store.Upload{}, err
	}
	return s.upload(), nil
}

// AppendUpload implements store.Backend.
func (b *Backend) AppendUpload(_ context.Context, id string, offset int64, r io.Reader, verify func() error) (store.Upload, error) {
	s, err := b.loadState(id)
	if err != nil {
		return store.Upload{}, err
	}
	b.mu.Lock()
	if b.appending[id] {
		b.mu.Unlock()
		return s.upload(), store.ErrUploadLocked
	}
	b.appending[id] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.appending, id)
		b.mu.Unlock()
	}()
	if s, err = b.loadState(id); err != nil {
		return store.Upload{}, err
	}
	if offset != s.Offset {
		return s.upload(), errs.E(errs.Conflict, "upload offset is %d, not %d", s.Offset, offset)
	}
	h, err := store.RestoreHash(s.HashState)
	if err != nil {
		return store.Upload{}, err
	}
	f, err := b.root.OpenFile(dataName(id), os.O_WRONLY, 0)
	if err != nil {
		return store.Upload{}, fmt.Errorf("disk: open upload %s: %w", id, err)
	}
	defer f.Close()
	// Bytes past the recorded offset are left-overs of a write that failed
	// before it was recorded.
	if err := f.Truncate(s.Offset); err != nil {
		return store.Upload{}, fmt.Errorf("disk: truncate upload %s: %w", id, err)
	}
	if _, err := f.Seek(s.Offset, io.SeekStart); err != nil {
		return store.Upload{}, fmt.Errorf("disk: seek upload %s: %w", id, err)
	}
	lr := &store.LimitedReader{R: r, N: s.Length - s.Offset, Hash: h}
	buf := make([]byte, copyBuf)
	var unsynced int64
	record := func() error {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("disk: sync upload %s: %w", id, err)
		}
		st, err := store.HashState(lr.Hash)
		if err != nil {
			return err
		}
		s.Offset += unsynced
		s.HashState = st
		unsynced = 0
		return b.saveState(s)
	}
	for {
		n, rerr := io.ReadFull(lr, buf)
		if n > 0 && errs.CodeOf(rerr) != errs.TooLarge {
			if _, err := f.Write(buf[:n]); err != nil {
				return s.upload(), fmt.Errorf("disk: write upload %s: %w", id, err)
			}
			unsynced += int64(n)
		}
		// With verify, nothing counts until the whole part is verified.
		if rerr == nil && (unsynced < syncEach || verify != nil) {
			continue
		}
		if errs.CodeOf(rerr) == errs.TooLarge {
			// More than the declared length: the request is refused and
			// the upload stays at its last recorded offset.
			return s.upload(), rerr
		}
		ended := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if verify != nil {
			if !ended {
				return s.upload(), store.ReadError(rerr)
			}
			if err := verify(); err != nil {
				return s.upload(), err
			}
		}
		if err := record(); err != nil {
			return s.upload(), err
		}
		switch {
		case rerr == nil:
		case ended:
			return s.upload(), nil
		default:
			return s.upload(), store.ReadError(rerr)
		}
	}
}

// CompleteUpload implements store.Backend. The commit, the check of the
// file it replaces and the settling of the upload's hold happen under one
// lock; a commit that fails deletes the upload (its data is gone).
func (b *Backend) CompleteUpload(_ context.Context, id string, replace store.ReplacePolicy) (store.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.loadState(id)
	if err != nil {
		return store.File{}, err
	}
	if s.Offset != s.Length {
		return store.File{}, errs.E(errs.Conflict, "upload %s holds %d of %d bytes", id, s.Offset, s.Length)
	}
	h, err := store.RestoreHash(s.HashState)
	if err != nil {
		return store.File{}, err
	}
	m := meta{File: store.File{ID: s.ID, Bucket: s.Bucket, Path: s.Path, Size: s.Length, SHA256: fmt.Sprintf("%x", h.Sum(nil)),
		ContentType: s.ContentType, Created: time.Now().UTC().Truncate(time.Millisecond), Owner: s.Owner, Custom: s.Custom}}
	rules := commitRules{replace: replace}
	if s.Reserved > 0 {
		rules.hold = id
	}
	f, err := b.commitLocked(dataName(id), m, rules)
	if err != nil {
		// The commit removed the data: the upload is gone too.
		_ = b.root.Remove(stateName(id))
		b.releaseLocked(s.Owner, id)
		return store.File{}, err
	}
	_ = b.root.Remove(stateName(id))
	return f, nil
}

// DeleteUpload implements store.Backend.
func (b *Backend) DeleteUpload(_ context.Context, id string) error {
	if err := b.dropState(id); err != nil {
		return err
	}
	if err := b.root.Remove(dataName(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: delete upload %s: %w", id, err)
	}
	return nil
}

// dropState removes the state of upload id, which ends it, and releases
// its hold, under b.mu: of two deletes, one releases.
func (b *Backend) dropState(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.loadState(id)
	if err != nil {
		return err
	}
	if err := b.root.Remove(stateName(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: delete upload %s: %w", id, err)
	}
	b.releaseLocked(s.Owner, id)
	return nil
}

// ExpiredUploads implements store.Backend.
func (b *Backend) ExpiredUploads(_ context.Context, t time.Time) ([]string, error) {
	entries, err := fs.ReadDir(b.root.FS(), upDir)
	if err != nil {
		return nil, fmt.Errorf("disk: list uploads: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		s, err := b.loadState(id)
		if err == nil && s.Expires.Before(t) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
