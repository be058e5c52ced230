package links

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignCheck(t *testing.T) {
	s, err := New([]byte(strings.Repeat("k", 32)), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New([]byte(strings.Repeat("o", 32)), time.Minute)
	now := time.Unix(1_800_000_000, 0)
	exp, e, sig := s.Sign("job1", "alice", now)
	if !exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("exp %v", exp)
	}
	flip := []byte(sig)
	flip[0] ^= 1
	for _, c := range []struct {
		name                 string
		signer               *Signer
		job, owner, exp, sig string
		now                  time.Time
		want                 error
	}{
		{"valid", s, "job1", "alice", e, sig, now, nil},
		{"at expiry", s, "job1", "alice", e, sig, exp, nil},
		{"expired", s, "job1", "alice", e, sig, exp.Add(time.Second), ErrExpired},
		{"other job", s, "job2", "alice", e, sig, now, ErrBadSig},
		{"other owner", s, "job1", "bob", e, sig, now, ErrBadSig},
		{"later exp", s, "job1", "alice", "1900000000", sig, now, ErrBadSig},
		{"tampered sig", s, "job1", "alice", e, string(flip), now, ErrBadSig},
		{"other key", other, "job1", "alice", e, sig, now, ErrBadSig},
		{"short sig", s, "job1", "alice", e, sig[:10], now, ErrMalformed},
		{"no exp", s, "job1", "alice", "", sig, now, ErrMalformed},
		{"exp not a number", s, "job1", "alice", "soon", sig, now, ErrMalformed},
		{"negative exp", s, "job1", "alice", "-5", sig, now, ErrMalformed},
	} {
		if err := c.signer.Check(c.job, c.owner, c.exp, c.sig, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestNewRefusesShortKeys(t *testing.T) {
	if _, err := New(make([]byte, MinKeyLen-1), time.Minute); err == nil {
		t.Error("a 31-byte key accepted")
	}
	if _, err := New(make([]byte, MinKeyLen), 0); err == nil {
		t.Error("a zero lifetime accepted")
	}
}

func FuzzCheck(f *testing.F) {
	s, _ := New([]byte(strings.Repeat("k", 32)), time.Minute)
	_, e, sig := s.Sign("j", "o", time.Unix(1, 0))
	f.Add("j", "o", e, sig)
	f.Fuzz(func(t *testing.T, job, owner, exp, sig string) {
		_ = s.Check(job, owner, exp, sig, time.Unix(1, 0))
	})
}
