package store

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/audiomill/audiomill/platform/errs"
)

const errTooLargeMsg = "the file is larger than %d bytes"

// LimitedReader reads from R and fails with errs.TooLarge as soon as more
// than N bytes arrive (N < 0: no limit). It also hashes what it reads.
type LimitedReader struct {
	R     io.Reader
	N     int64
	Count int64
	Hash  hash.Hash
}

// NewLimitedReader returns a LimitedReader hashing with a fresh SHA-256;
// limit <= 0 means no limit.
func NewLimitedReader(r io.Reader, limit int64) *LimitedReader {
	if limit <= 0 {
		limit = -1
	}
	return &LimitedReader{R: r, N: limit, Hash: sha256.New()}
}

// Read implements io.Reader.
func (l *LimitedReader) Read(p []byte) (int, error) {
	n, err := l.R.Read(p)
	if n > 0 {
		l.Hash.Write(p[:n])
		l.Count += int64(n)
		if l.N >= 0 && l.Count > l.N {
			return n, errs.E(errs.TooLarge, errTooLargeMsg, l.N)
		}
	}
	return n, err
}

// Sum returns the hex SHA-256 of what was read.
func (l *LimitedReader) Sum() string { return hex.EncodeToString(l.Hash.Sum(nil)) }

// CheckDigest compares a wanted digest (nil: none) with the hex sum got.
func CheckDigest(want []byte, got string) error {
	if len(want) == 0 {
		return nil
	}
	if hex.EncodeToString(want) != got {
		return errs.E(errs.Invalid, "Content-Digest does not match the content (sha-256 %s)", got)
	}
	return nil
}

// HashState marshals h's state.
func HashState(h hash.Hash) ([]byte, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, fmt.Errorf("hash %T cannot be marshalled", h)
	}
	return m.MarshalBinary()
}

// RestoreHash returns a SHA-256 restored from state (empty: a fresh one).
func RestoreHash(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if len(state) == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("restore sha-256 state: %w", err)
	}
	return h, nil
}

// ReadError classifies an error from reading a request body: our own coded
// errors pass through, anything else (a dropped connection) is wrapped as
// errs.Invalid ("body ended early").
func ReadError(err error) error {
	if errs.IsCoded(err) {
		return err
	}
	if strings.Contains(err.Error(), "http: request body too large") {
		return errs.Wrap(err, errs.TooLarge, "request body too large")
	}
	return errs.Wrap(err, errs.Invalid, "reading the request body failed")
}

// IsUnder reports whether path lies in folder (a path without trailing "/").
func IsUnder(path, folder string) bool {
	return strings.HasPrefix(path, folder+"/")
}

// MovedPath returns path with its from-prefix replaced by to (path == from
// or path under from).
func MovedPath(path, from, to string) string {
	if path == from {
		return to
	}
	return to + strings.TrimPrefix(path, from)
}
