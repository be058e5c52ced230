package store_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

func TestHoldsGrow(t *testing.T) {
	for _, c := range []struct {
		name              string
		holds             store.Holds
		want              store.Hold
		need, used, quota int64
		got               int64 // what the hold reserves after
		err               errs.Code
	}{
		{name: "Fits", want: store.Hold{ID: "a", Bytes: 10}, need: 10, used: 0, quota: 10, got: 10},
		{name: "UpToWhatIsLeft", want: store.Hold{ID: "a", Bytes: 100}, need: 3, used: 2, quota: 10, got: 8},
		{name: "ErrOverQuota", want: store.Hold{ID: "a", Bytes: 10}, need: 10, used: 1, quota: 10, err: errs.TooLarge},
		{name: "ErrBesideOthers", holds: store.Holds{{ID: "b", Bytes: 6}}, want: store.Hold{ID: "a", Bytes: 5}, need: 5, quota: 10, err: errs.TooLarge},
		{name: "OthersCountTheirBytesLessCredit", holds: store.Holds{{ID: "b", Bytes: 6, Credit: 4}}, want: store.Hold{ID: "a", Bytes: 8}, need: 8, quota: 10, got: 8},
		{name: "CreditForAReplace", want: store.Hold{ID: "a", Bytes: 9, Credit: 9, CreditID: "f"}, need: 9, used: 10, quota: 10, got: 9},
		{name: "ErrCreditNotEnough", want: store.Hold{ID: "a", Bytes: 12, Credit: 9, CreditID: "f"}, need: 12, used: 10, quota: 10, err: errs.TooLarge},
		{name: "Grows", holds: store.Holds{{ID: "a", Bytes: 4}}, want: store.Hold{ID: "a", Bytes: 8}, need: 6, quota: 10, got: 8},
		{name: "NeverShrinks", holds: store.Holds{{ID: "a", Bytes: 8}}, want: store.Hold{ID: "a", Bytes: 2}, need: 2, quota: 10, got: 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			hs, got, err := c.holds.Grow(c.want, c.need, c.used, c.quota)
			if errs.CodeOf(err) != c.err {
				t.Fatalf("err = %v, want code %q", err, c.err)
			}
			if err != nil {
				if !store.IsQuotaExceeded(err) {
					t.Fatalf("err = %v, not the quota's", err)
				}
				return
			}
			h, ok := hs.Find(c.want.ID)
			if got != c.got || !ok || h.Bytes != c.got || h.Credit != c.want.Credit {
				t.Fatalf("got %d, hold %+v (%v); want %d", got, h, ok, c.got)
			}
		})
	}
}

func TestHoldsBounded(t *testing.T) {
	var hs store.Holds
	for i := range store.MaxHolds {
		var err error
		if hs, _, err = hs.Grow(store.Hold{ID: fmt.Sprint(i), Bytes: 1}, 1, 0, 1<<40); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := hs.Grow(store.Hold{ID: "one more", Bytes: 1}, 1, 0, 1<<40)
	if errs.CodeOf(err) != errs.RateLimited {
		t.Fatalf("hold past %d = %v, want rate_limited", store.MaxHolds, err)
	}
	// An existing hold still grows.
	if _, got, err := hs.Grow(store.Hold{ID: "0", Bytes: 5}, 5, 0, 1<<40); err != nil || got != 5 {
		t.Fatalf("grow an existing hold = %d, %v", got, err)
	}
}

func TestHoldsPruneAndRelease(t *testing.T) {
	now := time.Now()
	hs := store.Holds{{ID: "old", Bytes: 5, Expires: now.Add(-time.Second)}, {ID: "new", Bytes: 3, Expires: now.Add(time.Hour)}, {ID: "forever", Bytes: 2}}
	hs = hs.Prune(now)
	if hs.Reserved("") != 5 || len(hs) != 2 {
		t.Fatalf("after prune = %+v", hs)
	}
	hs, ok := hs.Release("new")
	if !ok || hs.Reserved("") != 2 {
		t.Fatalf("after release = %+v, %v", hs, ok)
	}
	if _, ok := hs.Release("new"); ok {
		t.Fatal("released twice")
	}
}

func TestHoldsCommitFits(t *testing.T) {
	hs := store.Holds{{ID: "mine", Bytes: 9, Credit: 9}, {ID: "other", Bytes: 3}}
	if err := hs.CommitFits("mine", 9, 0, 10); err != nil {
		t.Fatalf("a replace that adds nothing: %v", err)
	}
	if err := hs.CommitFits("mine", 9, 9, 10); !store.IsQuotaExceeded(err) {
		t.Fatalf("a commit whose credit is gone = %v, want the quota's", err)
	}
	if err := hs.CommitFits("mine", 0, 7, 10); err != nil {
		t.Fatalf("a commit that fits: %v", err)
	}
	if err := hs.CommitFits("mine", 20, -5, 10); err != nil {
		t.Fatalf("a commit that frees bytes over the quota: %v", err)
	}
}

// The reader reserves before it hands bytes on: nothing past a refused
// reservation reaches the writer.
func TestQuotaReader(t *testing.T) {
	var grows []int64
	room := int64(10)
	q := &store.QuotaReader{R: bytes.NewReader(make([]byte, 12)), Max: 1 << 30, Grow: func(need, want int64) (int64, error) {
		grows = append(grows, need)
		if need > room {
			return 0, store.QuotaExceeded(room)
		}
		return min(want, room), nil
	}}
	buf := make([]byte, 4)
	var got int64
	var err error
	for err == nil {
		var n int
		n, err = q.Read(buf)
		got += int64(n)
	}
	if !store.IsQuotaExceeded(err) || got != 8 || len(grows) != 2 {
		t.Fatalf("read %d bytes, %d reservations, err %v; want 8, 2 and the quota's error", got, len(grows), err)
	}
	// Bytes past Max pass unreserved: the size limit refuses them.
	q = &store.QuotaReader{R: bytes.NewReader(make([]byte, 6)), Max: 4, Grow: func(need, want int64) (int64, error) {
		if want > 4 {
			t.Fatalf("reserved %d past Max", want)
		}
		return want, nil
	}}
	if n, err := io.Copy(io.Discard, q); err != nil || n != 6 {
		t.Fatalf("copy = %d, %v", n, err)
	}
}
