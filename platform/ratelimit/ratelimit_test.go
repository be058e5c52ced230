package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/platform/ratelimit"
	"github.com/audiomill/audiomill/platform/testenv"
)

func client(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func TestTake(t *testing.T) {
	ctx := context.Background()
	prefix := fmt.Sprintf("ratelimit-test:%d:", time.Now().UnixNano())
	l := ratelimit.New(client(t), prefix, 3, 2*time.Second)
	for i := range 3 {
		if wait, err := l.Take(ctx, "alice", fmt.Sprint(i)); err != nil || wait != 0 {
			t.Fatalf("event %d = %v, %v; want allowed", i, wait, err)
		}
	}
	wait, err := l.Take(ctx, "alice", "3")
	if err != nil || wait <= 0 || wait > 2*time.Second {
		t.Fatalf("fourth event = %v, %v; want refused until the window ends", wait, err)
	}
	// An event already counted is allowed again, without counting.
	if wait, err := l.Take(ctx, "alice", "1"); err != nil || wait != 0 {
		t.Fatalf("a counted event again = %v, %v; want allowed", wait, err)
	}
	// Another key has its own window.
	if wait, err := l.Take(ctx, "bob", "3"); err != nil || wait != 0 {
		t.Fatalf("another key = %v, %v; want allowed", wait, err)
	}
	// The window ends: the key may act again.
	testenv.Eventually(t, 5*time.Second, func() bool {
		w, err := l.Take(ctx, "alice", "4")
		return err == nil && w == 0
	}, "alice still refused after the window")
}

func TestOff(t *testing.T) {
	l := ratelimit.New(client(t), "ratelimit-test-off:", 0, time.Minute)
	for i := range 100 {
		if wait, err := l.Take(context.Background(), "k", fmt.Sprint(i)); err != nil || wait != 0 {
			t.Fatalf("limit 0 refused event %d", i)
		}
	}
}
