package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/auth/internal/ratelimit"
	"github.com/audiomill/audiomill/platform/testenv"
)

func newLimiter(t *testing.T, opts ratelimit.Options) *ratelimit.Limiter {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	prefix := fmt.Sprintf("authtest:ratelimit:%d:", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, _ := rdb.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		_ = rdb.Close()
	})
	return ratelimit.New(rdb, prefix, opts)
}

// TestBackoffDoubles: MaxFailures free attempts, then Base, 2×Base, …
// capped at Max; a refused attempt is not counted; Reset forgets.
func TestBackoffDoubles(t *testing.T) {
	base := 200 * time.Millisecond
	l := newLimiter(t, ratelimit.Options{MaxFailures: 2, Window: time.Minute, Base: base, Max: 3 * base})
	ctx := testenv.Context(t, 10*time.Second)
	key := ratelimit.PairKey("a@example.com", "192.0.2.1")
	reserve := func() time.Duration {
		t.Helper()
		wait, err := l.Reserve(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return wait
	}
	for i := range 2 {
		if w := reserve(); w != 0 {
			t.Fatalf("attempt %d waits %s", i+1, w)
		}
	}
	for _, want := range []time.Duration{base, 2 * base, 3 * base, 3 * base} {
		w := reserve()
		if w <= want-50*time.Millisecond || w > want {
			t.Fatalf("wait %s, want about %s", w, want)
		}
		if again := reserve(); again <= 0 || again > w {
			t.Fatalf("refused attempt changed the wait: %s then %s", w, again)
		}
		time.Sleep(w + 10*time.Millisecond)
		if w := reserve(); w != 0 {
			t.Fatalf("after the back-off: waits %s", w)
		}
	}
	if err := l.Reset(ctx, key); err != nil {
		t.Fatal(err)
	}
	if w := reserve(); w != 0 {
		t.Fatalf("after reset: waits %s", w)
	}
}

// TestRefund: a success gives the attempt back, and its back-off when
// that brings the key under the allowance.
func TestRefund(t *testing.T) {
	l := newLimiter(t, ratelimit.Options{MaxFailures: 2, Window: time.Minute, Base: time.Minute, Max: time.Minute})
	ctx := testenv.Context(t, 10*time.Second)
	key := ratelimit.IPKey("192.0.2.2")
	for range 2 {
		if w, err := l.Reserve(ctx, key); err != nil || w != 0 {
			t.Fatalf("reserve: %s %v", w, err)
		}
	}
	if err := l.Refund(ctx, key); err != nil {
		t.Fatal(err)
	}
	if w, err := l.Reserve(ctx, key); err != nil || w != 0 {
		t.Fatalf("after refund: %s %v", w, err)
	}
	if w, _ := l.Reserve(ctx, key); w <= 0 {
		t.Fatal("third attempt without refund not refused")
	}
}
