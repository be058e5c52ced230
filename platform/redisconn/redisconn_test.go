package redisconn_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/redisconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

func TestPingRealRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	r := config.NewReader(func(k string) string { return map[string]string{"REDIS_ADDR": addr}[k] })
	client := redisconn.New(redisconn.ReadConfig(r))
	t.Cleanup(func() { _ = client.Close() })
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 5*time.Second)
	if err := redisconn.Ping(client)(ctx); err != nil {
		t.Fatalf("ping %s: %v", addr, err)
	}
	key := "audiomill:test:redisconn:" + t.Name()
	if err := client.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Fatalf("get = %q, %v", got, err)
	}
	client.Del(ctx, key)
}

// A Redis that is not there fails the check quickly, naming the address.
func TestPingDownFailsFast(t *testing.T) {
	client := redisconn.New(redisconn.Config{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := redisconn.Ping(client)(ctx)
	if err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("ping took %s", time.Since(start))
	}
	if want := "127.0.0.1:1"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}
