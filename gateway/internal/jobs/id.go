package jobs

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// ID is a job's id: 12 bytes written as 24 lowercase hex digits, laid out
// as a MongoDB ObjectID (a 4-byte big-endian Unix time, then 8 bytes of
// randomness), the form job ids had when jobs lived in MongoDB: the ids of
// jobs made before and after the move are the same kind, in URLs, in the
// events' job_id and in the converter's and notifier's idempotency keys.
type ID [12]byte

// NewID returns a fresh job id: the current second and 64 random bits
// (two ids of one second collide with odds of 2⁻⁶⁴).
func NewID() ID {
	var id ID
	binary.BigEndian.PutUint32(id[:4], uint32(time.Now().Unix()))
	_, _ = rand.Read(id[4:]) // crypto/rand.Read never fails on supported platforms
	return id
}

// ParseID parses a job id (24 hex digits); anything else is errs.Invalid.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, errs.E(errs.Invalid, "malformed job id")
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, errs.E(errs.Invalid, "malformed job id")
	}
	return id, nil
}

// Hex is the id's public form: 24 lowercase hex digits.
func (id ID) Hex() string { return hex.EncodeToString(id[:]) }

// String is Hex.
func (id ID) String() string { return id.Hex() }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Cursor is a position in an owner's job list, which is ordered by
// (created_at, id) descending: a page after the cursor holds the jobs older
// than it. Its text form (String) is opaque to clients.
type Cursor struct {
	CreatedAt time.Time
	ID        ID
}

// CursorOf is the cursor just past j.
func CursorOf(j Job) Cursor { return Cursor{CreatedAt: j.CreatedAt, ID: j.ID} }

// IsZero reports whether c is the zero Cursor (the start of the list).
func (c Cursor) IsZero() bool { return c.ID.IsZero() && c.CreatedAt.IsZero() }

// cursorLen is a cursor's binary form: the time in Unix microseconds (the
// database's precision), big-endian, then the id.
const cursorLen = 8 + len(ID{})

// String is the cursor's text form: base64url (unpadded) of its binary form.
func (c Cursor) String() string {
	var b [cursorLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.CreatedAt.UnixMicro()))
	copy(b[8:], c.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseCursor parses what Cursor.String returned; anything else is
// errs.Invalid.
func ParseCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != cursorLen {
		return Cursor{}, errs.E(errs.Invalid, "malformed cursor")
	}
	micros := int64(binary.BigEndian.Uint64(b[:8]))
	if micros <= 0 {
		return Cursor{}, errs.E(errs.Invalid, "malformed cursor")
	}
	c := Cursor{CreatedAt: time.UnixMicro(micros).UTC()}
	copy(c.ID[:], b[8:])
	return c, nil
}
