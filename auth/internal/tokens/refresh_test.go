package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/auth/internal/tokens"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

func newStore(t *testing.T, ttl time.Duration, maxAge ...time.Duration) (*tokens.RefreshStore, *redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	prefix := fmt.Sprintf("authtest:tokens:%d:", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		_ = rdb.Close()
	})
	age := 30 * 24 * time.Hour
	if len(maxAge) > 0 {
		age = maxAge[0]
	}
	return tokens.NewRefreshStore(rdb, prefix, ttl, age), rdb, prefix
}

func TestRefreshRotation(t *testing.T) {
	s, rdb, prefix := newStore(t, time.Hour)
	ctx := testenv.Context(t, 10*time.Second)
	tok, fam, err := s.Issue(ctx, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	next, sub, fam2, err := s.Rotate(ctx, tok)
	if err != nil || sub != "user-1" || fam2 != fam || next == tok {
		t.Fatalf("rotate: %q %q %q %v", next, sub, fam2, err)
	}
	ttl, _ := rdb.PTTL(ctx, prefix+"family:"+fam+":revoked").Result()
	if ttl > 0 {
		t.Fatal("family revoked by a normal rotation")
	}
	// Reuse of the spent token revokes the family: next is dead too.
	if _, _, _, err := s.Rotate(ctx, tok); errs.CodeOf(err) != errs.Unauthorized {
		t.Fatalf("reuse: %v", err)
	}
	if _, _, _, err := s.Rotate(ctx, next); errs.CodeOf(err) != errs.Unauthorized {
		t.Fatalf("sibling after reuse: %v", err)
	}
	if revoked, _ := s.FamilyRevoked(ctx, fam); !revoked {
		t.Fatal("family not revoked")
	}
}

// TestConcurrentRefresh: two clients racing with one token get one
// rotation at most; the loser's attempt counts as reuse.
func TestConcurrentRefresh(t *testing.T) {
	s, _, _ := newStore(t, time.Hour)
	ctx := testenv.Context(t, 10*time.Second)
	for range 20 {
		tok, _, err := s.Issue(ctx, "user-1")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		results := make([]error, 2)
		for i := range results {
			wg.Add(1)
			go func() { defer wg.Done(); _, _, _, results[i] = s.Rotate(ctx, tok) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range results {
			if err == nil {
				ok++
			} else if errs.CodeOf(err) != errs.Unauthorized {
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 2 concurrent rotations succeeded, want exactly 1", ok)
		}
	}
}

func TestRefreshTokenExpires(t *testing.T) {
	s, _, _ := newStore(t, 300*time.Millisecond)
	ctx := testenv.Context(t, 10*time.Second)
	tok, _, err := s.Issue(ctx, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, _, _, err := s.Rotate(ctx, tok); errs.CodeOf(err) != errs.Unauthorized {
		t.Fatalf("expired token: %v", err)
	}
}

// TestSessionMaxAge: a family ends maxAge after its login however often it
// is refreshed; the error says so.
func TestSessionMaxAge(t *testing.T) {
	s, _, _ := newStore(t, time.Hour, 700*time.Millisecond)
	ctx := testenv.Context(t, 10*time.Second)
	tok, fam, err := s.Issue(ctx, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		if tok, _, _, err = s.Rotate(ctx, tok); err != nil {
			t.Fatalf("refresh within the max age: %v", err)
		}
	}
	if live, err := s.Sessions(ctx, "user-1"); err != nil || len(live) != 1 || live[0] != fam {
		t.Fatalf("sessions %v %v, want [%s]", live, err, fam)
	}
	time.Sleep(400 * time.Millisecond)
	_, _, _, err = s.Rotate(ctx, tok)
	if errs.CodeOf(err) != errs.Unauthorized || !errors.Is(err, tokens.ErrSessionExpired) {
		t.Fatalf("refresh past the max age: %v", err)
	}
	if live, err := s.Sessions(ctx, "user-1"); err != nil || len(live) != 0 {
		t.Fatalf("ended session still listed: %v %v", live, err)
	}
}
