package store

import (
	"errors"
	"io"
	"slices"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// The quota. Each owner has a usage counter: the bytes their files take
// (kept by the backend at every commit, replace and delete) and the holds
// of their writes in progress. A write reserves its bytes before it stores
// them, in one atomic step that checks used + held + new <= quota (a
// resumable upload its Upload-Length at creation, a one-shot write its
// Content-Length before it reads the body, or ReserveStep at a time while a
// body of unknown length streams), and its commit settles the hold in the
// same atomic step as the replace: the hold goes, the file's bytes count
// instead and the bytes of the file it replaced are freed. A failed,
// deleted or expired write releases its hold. So concurrent writes of one
// owner never store more than the quota together.

// ReserveStep is how many bytes a write of unknown length reserves at a time
// while its body streams: one atomic update per 64 MiB, nothing per chunk.
const ReserveStep = 64 << 20

// MaxHolds bounds an owner's writes in progress that hold a reservation: a
// hold costs a little of every reservation of that owner, and a client
// that opens uploads without end is refused (errs.RateLimited).
const MaxHolds = 1000

// errQuota marks QuotaExceeded's errors.
var errQuota = errors.New("quota exceeded")

// QuotaExceeded is the error of a write the owner's quota has no room for;
// left is the most bytes that write could have held.
func QuotaExceeded(left int64) error {
	return errs.Wrap(errQuota, errs.TooLarge, "the upload exceeds your storage quota (%d bytes left)", max(0, left))
}

// IsQuotaExceeded reports whether err is QuotaExceeded's.
func IsQuotaExceeded(err error) bool { return errors.Is(err, errQuota) }

// Hold is one write's reservation against its owner's quota.
type Hold struct {
	// ID names the write: its file's or upload's id.
	ID string
	// Bytes is how much the write may store.
	Bytes int64
	// Credit is the size of the owner's own file the write is to replace
	// (CreditID), which its commit frees: a replace needs room only for
	// what it adds. A commit that finds another file there checks the
	// quota again with the real figures.
	Credit   int64
	CreditID string
	// Expires is when the hold lapses should nothing release it (its
	// writer died); zero: never.
	Expires time.Time
}

// Counts is what the hold takes of the quota: its bytes less the credit.
func (h Hold) Counts() int64 { return max(0, h.Bytes-h.Credit) }

// Holds are the reservations of one owner.
type Holds []Hold

// Find returns the hold id.
func (hs Holds) Find(id string) (Hold, bool) {
	if i := slices.IndexFunc(hs, func(h Hold) bool { return h.ID == id }); i >= 0 {
		return hs[i], true
	}
	return Hold{}, false
}

// Reserved is what the holds other than skip take of the quota.
func (hs Holds) Reserved(skip string) int64 {
	var n int64
	for _, h := range hs {
		if h.ID != skip {
			n += h.Counts()
		}
	}
	return n
}

// Prune drops the holds expired at now.
func (hs Holds) Prune(now time.Time) Holds {
	return slices.DeleteFunc(hs, func(h Hold) bool { return !h.Expires.IsZero() && h.Expires.Before(now) })
}

// Release drops the hold id; it reports whether there was one.
func (hs Holds) Release(id string) (Holds, bool) {
	i := slices.IndexFunc(hs, func(h Hold) bool { return h.ID == id })
	if i < 0 {
		return hs, false
	}
	return slices.Delete(hs, i, i+1), true
}

// Grow has the hold want.ID reserve at least need bytes and up to
// want.Bytes, as much as the quota leaves beside used bytes and the other
// holds; the hold takes want's credit (a hold not there yet, its expiry
// too). It returns the holds and the bytes the hold now reserves;
// QuotaExceeded when need does not fit (nothing changes then).
func (hs Holds) Grow(want Hold, need, used, quota int64) (Holds, int64, error) {
	i := slices.IndexFunc(hs, func(h Hold) bool { return h.ID == want.ID })
	cur := want
	cur.Bytes = 0
	if i >= 0 {
		cur = hs[i]
		cur.Credit, cur.CreditID = want.Credit, want.CreditID
	}
	if cur.Bytes >= need {
		return hs, cur.Bytes, nil
	}
	// The most the hold may reach: what is left, plus the credit.
	room := quota - used - hs.Reserved(want.ID) + cur.Credit
	if room < need {
		return hs, cur.Bytes, QuotaExceeded(room)
	}
	if i < 0 && len(hs) >= MaxHolds {
		return hs, 0, errs.E(errs.RateLimited, "%d uploads are in progress; complete or delete one first", len(hs))
	}
	cur.Bytes = max(need, min(want.Bytes, room))
	if i < 0 {
		return append(hs, cur), cur.Bytes, nil
	}
	hs[i] = cur
	return hs, cur.Bytes, nil
}

// CommitFits reports whether a commit of an owner's write that adds added
// bytes to used (its size less the size of the owner's file it replaces)
// fits beside the holds other than skip: a commit that adds nothing always
// does.
func (hs Holds) CommitFits(skip string, used, added, quota int64) error {
	if added <= 0 {
		return nil
	}
	if left := quota - used - hs.Reserved(skip); added > left {
		return QuotaExceeded(left)
	}
	return nil
}

// QuotaReader reads R and reserves quota before it hands bytes on past
// what is reserved: Grow(need, want) must reserve at least need bytes in
// all (up to want) and return the new total, or fail. Bytes past Max (> 0)
// are handed on unreserved, for the size limit downstream to refuse.
type QuotaReader struct {
	R        io.Reader
	Reserved int64
	Max      int64
	Grow     func(need, want int64) (int64, error)
	count    int64
}

// Read implements io.Reader.
func (q *QuotaReader) Read(p []byte) (int, error) {
	n, err := q.R.Read(p)
	q.count += int64(n)
	if q.count <= q.Reserved || q.Max > 0 && q.count > q.Max {
		return n, err
	}
	want := q.count + ReserveStep
	if q.Max > 0 {
		want = min(want, q.Max)
	}
	got, gerr := q.Grow(q.count, want)
	if gerr != nil {
		return 0, gerr
	}
	q.Reserved = got
	return n, err
}

// ReserveStream reserves req's SizeHint (at most its MaxSize) for the hold
// h at once, and returns r wrapped to reserve more as more arrives. grow
// reserves at least need bytes for h, whose Bytes is set to what the write
// wants, and returns what is reserved.
func ReserveStream(req PutRequest, h *Hold, r io.Reader, grow func(need int64) (int64, error)) (io.Reader, error) {
	reserved := int64(0)
	if req.SizeHint > 0 {
		h.Bytes = req.SizeHint
		if req.MaxSize > 0 {
			h.Bytes = min(h.Bytes, req.MaxSize)
		}
		var err error
		if reserved, err = grow(h.Bytes); err != nil {
			return nil, err
		}
	}
	return &QuotaReader{R: r, Reserved: reserved, Max: req.MaxSize, Grow: func(need, want int64) (int64, error) {
		h.Bytes = want
		return grow(need)
	}}, nil
}
