// Package store defines what filestorage keeps and the Backend interface its
// two implementations (gridfs, disk) satisfy, with the rules every backend
// shares: bucket and path validation, size limits while streaming, and the
// SHA-256 that every object carries.
package store

import (
	"context"
	"io"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// File is the metadata of one stored object.
type File struct {
	// ID is stable for the file's life: moving changes Path, never ID.
	ID     string `json:"id"`
	Bucket string `json:"bucket"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the content.
	SHA256      string            `json:"sha256"`
	ContentType string            `json:"content_type"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Custom      map[string]string `json:"custom,omitempty"`
}

// PutRequest describes one upload.
type PutRequest struct {
	Bucket      string
	Path        string
	Owner       string
	ContentType string
	Custom      map[string]string
	// Exclusive fails the upload with errs.Conflict when Path exists
	// (If-None-Match: *); otherwise an existing file at Path is replaced
	// (the new file has a new ID).
	Exclusive bool
	// MaxSize is the most bytes the body may hold; crossing it fails with
	// errs.TooLarge as soon as it happens. 0 means no limit.
	MaxSize int64
	// SHA256, when set (32 bytes), must match the content or the upload
	// fails with errs.Invalid and nothing is stored.
	SHA256 []byte
	// IdempotencyKey, when set, is recorded with the file so that
	// FindIdempotent finds it.
	IdempotencyKey string
	// SizeHint, when positive, is how many bytes the body is expected to
	// hold (its Content-Length): a backend buffers no more than that, and
	// reserves that much of the quota before it reads the body. The body
	// may still hold another length; MaxSize is the limit.
	SizeHint int64
	// Replace says whose file at Path the write may replace. The check is
	// made in the same atomic step as the replace (the commit), so a file
	// stored at Path while the body streamed is never taken over.
	Replace ReplacePolicy
	// Quota, when positive, is how many bytes Owner's files and writes in
	// progress may take together: the write reserves its bytes before it
	// stores them (SizeHint at once, then ReserveStep at a time) and fails
	// with QuotaExceeded when there is no room. 0: no quota.
	Quota int64
}

// ReplacePolicy says whose file at its path a write may replace.
type ReplacePolicy int

const (
	// ReplaceOwn replaces only a file of the write's own owner: another
	// owner's file at the path fails the write with errs.Conflict. It is
	// the zero value.
	ReplaceOwn ReplacePolicy = iota
	// ReplaceAny replaces whoever's file is at the path (a storage:admin
	// write).
	ReplaceAny
)

// Allows reports whether a write or move of owner under p may touch a file
// of fileOwner.
func (p ReplacePolicy) Allows(owner, fileOwner string) bool {
	return p == ReplaceAny || owner == fileOwner
}

// ErrOwnerConflict is the error of a write whose path another owner's file
// took while it was in progress (ReplaceOwn).
func ErrOwnerConflict(bucket, p string) error {
	return errs.E(errs.Conflict, "%s/%s was stored by someone else while this upload was in progress; nothing was changed", bucket, p)
}

// ErrPathTaken is the answer to a write or a move onto a path that another
// owner's file holds: a conflict that names no owner.
func ErrPathTaken(bucket, p string) error {
	return errs.E(errs.Conflict, "%s/%s is taken; choose another path", bucket, p)
}

// MoveRequest describes the move of one file to another path of its
// bucket. Its id, content and owner stay.
type MoveRequest struct {
	Bucket string
	From   string
	To     string
	// Overwrite lets the move replace a file at To; without it such a
	// file fails the move with errs.Conflict.
	Overwrite bool
	// Owner is who moves.
	Owner string
	// Replace says whose files the move may touch, checked in the same
	// atomic step as the rename, so a file stored at either path after the
	// caller looked is never taken over. With ReplaceOwn (the zero value)
	// the file at From must be Owner's (another owner's is errs.NotFound,
	// as a missing one) and so must a file at To (another owner's fails
	// the move with ErrPathTaken, Overwrite or not); with ReplaceAny,
	// anyone's (a storage:admin move).
	Replace ReplacePolicy
}

// ListOptions selects a page of a bucket's folder view.
type ListOptions struct {
	Prefix string
	// Delimiter is "" (every file under Prefix) or "/" (one folder level).
	Delimiter string
	// After resumes the listing after this path or common prefix.
	After string
	Limit int
	// Owner, when set, restricts the listing to that owner's files.
	Owner string
}

// Entry is one item of a listing: a file or a common prefix (a folder).
type Entry struct {
	File   *File
	Prefix string
}

// Key is what the entry sorts by.
func (e Entry) Key() string {
	if e.File != nil {
		return e.File.Path
	}
	return e.Prefix
}

// Page is one page of a listing; More says whether entries follow.
type Page struct {
	Entries []Entry
	More    bool
}

// BucketStats summarises one bucket.
type BucketStats struct {
	Name  string `json:"name"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// TotalBytes is the bytes of all of stats: an owner's usage, for the quota.
func TotalBytes(stats []BucketStats) int64 {
	var total int64
	for _, s := range stats {
		total += s.Bytes
	}
	return total
}

// Upload is the state of a resumable (tus) upload. Its content is written
// where the finished file will live, so completing it copies nothing.
type Upload struct {
	ID          string
	Bucket      string
	Path        string
	Owner       string
	ContentType string
	Custom      map[string]string
	// Length is the declared total size; Offset how much is stored so far.
	Length  int64
	Offset  int64
	Created time.Time
	Expires time.Time
	// HashState is the marshalled SHA-256 state at Offset.
	HashState []byte
	// Pending is backend state that goes with Offset (GridFS: the bytes
	// past the last whole chunk).
	Pending []byte
	// Quota, when positive, is Owner's quota (as in PutRequest):
	// CreateUpload reserves Length against it, or fails with
	// QuotaExceeded; the reservation lasts until the upload completes, is
	// deleted or expires and is swept.
	Quota int64
}

// ErrUploadLocked is AppendUpload's answer while another append to the same
// upload is in progress (on any replica, for GridFS).
var ErrUploadLocked = errs.E(errs.Conflict, "the upload is being written by another request; retry")

// ErrBucketLimit is ClaimBucket's answer when the owner already stores
// files in as many buckets as it may.
var ErrBucketLimit = errs.E(errs.Forbidden, "the owner stores files in as many buckets as it may")

// Backend stores files. Every method validates its bucket and path
// arguments (errs.Invalid). Errors carry the codes of platform/errs.
type Backend interface {
	// Put streams r into a new file. errs.Conflict when req.Exclusive and
	// the path exists, or when another owner's file is at the path at the
	// commit and req.Replace is ReplaceOwn; errs.TooLarge past req.MaxSize
	// or past req.Quota (QuotaExceeded); errs.Invalid on a digest
	// mismatch. On any error nothing is stored and no quota stays
	// reserved.
	Put(ctx context.Context, req PutRequest, r io.Reader) (File, error)
	// Stat returns the file with id in any bucket; errs.NotFound if none.
	Stat(ctx context.Context, id string) (File, error)
	// StatPath returns the file at bucket/path; errs.NotFound if none.
	StatPath(ctx context.Context, bucket, path string) (File, error)
	// FindIdempotent returns the file uploaded into bucket by owner with
	// key; errs.NotFound if none.
	FindIdempotent(ctx context.Context, bucket, owner, key string) (File, error)
	// Open reads length bytes of f from offset (length < 0: to the end)
	// without reading what lies before offset.
	Open(ctx context.Context, f File, offset, length int64) (io.ReadCloser, error)
	// List returns a page of the bucket's folder view, sorted by path.
	List(ctx context.Context, bucket string, opts ListOptions) (Page, error)
	// Move renames the file at req.From to req.To, checking whose files
	// it touches as req.Replace says in the same atomic step as the
	// rename. errs.NotFound when From holds no file (or, under ReplaceOwn,
	// another owner's); ErrPathTaken (errs.Conflict) when To holds another
	// owner's file under ReplaceOwn; errs.Conflict when To holds a file
	// and !req.Overwrite. On any error nothing moves: the file at From and
	// the one at To stay as they were.
	Move(ctx context.Context, req MoveRequest) (File, error)
	// Delete removes the file with id; errs.NotFound if none.
	Delete(ctx context.Context, id string) error
	// Buckets summarises every bucket (restricted to owner's files when
	// owner is set).
	Buckets(ctx context.Context, owner string) ([]BucketStats, error)
	// HasBucket reports whether bucket holds, or has held, files.
	HasBucket(ctx context.Context, bucket string) (bool, error)
	// ClaimBucket records that owner stores files in bucket, before the
	// first of them is written. An owner's buckets are those it has
	// claimed (a claim stays when its files are deleted: the bucket's
	// storage does too) and those it holds files in. When bucket is not
	// among them and owner has claimed max buckets already (max > 0), it
	// returns ErrBucketLimit and records and creates nothing. Claims of
	// one owner are serialised, so concurrent claims never exceed max.
	ClaimBucket(ctx context.Context, bucket, owner string, max int) error
	// Usage returns the bytes owner's files take in every bucket (not
	// counting the reservations of writes in progress).
	Usage(ctx context.Context, owner string) (int64, error)

	// CreateUpload records a new resumable upload (ID, Created, Expires
	// and HashState are set by the backend when empty), reserving its
	// Length against u.Quota when that is positive (QuotaExceeded when
	// there is no room; nothing is recorded then).
	CreateUpload(ctx context.Context, u Upload) (Upload, error)
	// GetUpload returns an unfinished upload; errs.NotFound if none.
	GetUpload(ctx context.Context, id string) (Upload, error)
	// AppendUpload writes r at offset, which must equal the upload's offset
	// (errs.Conflict otherwise), up to the declared length (errs.TooLarge
	// past it); ErrUploadLocked while another append runs. Without verify,
	// what was stored before an error is kept and counted, so the client
	// resumes from the returned upload's Offset. With verify, the part
	// counts only when it arrived whole and verify (called once it is
	// written) returns nil; otherwise the upload stays at offset and
	// verify's error is returned.
	AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, verify func() error) (Upload, error)
	// CompleteUpload turns a fully written upload into a file at its path,
	// replacing a file there as replace allows, and settles its quota
	// reservation (the file's bytes count instead). errs.Conflict when
	// another owner's file is at the path and replace is ReplaceOwn: the
	// upload is then deleted, and the file at the path left as it was.
	CompleteUpload(ctx context.Context, id string, replace ReplacePolicy) (File, error)
	// DeleteUpload removes an upload and its partial data, and releases
	// its quota reservation.
	DeleteUpload(ctx context.Context, id string) error
	// ExpiredUploads lists uploads whose expiry is before t.
	ExpiredUploads(ctx context.Context, t time.Time) ([]string, error)
}
