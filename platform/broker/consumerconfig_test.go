package broker_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/config"
)

func TestReadConsumerConfig(t *testing.T) {
	def := broker.ConsumerDefaults{Queue: "svc.things", Concurrency: 4, RetryDelay: 5 * time.Second,
		MaxRetryDelay: time.Minute, MaxAttempts: 12}
	read := func(def broker.ConsumerDefaults, env map[string]string) (broker.ConsumerConfig, error) {
		r := config.NewReader(func(k string) string { return env[k] })
		c := broker.ReadConsumerConfig(r, "SVC", def)
		return c, r.Err()
	}

	c, err := read(def, nil)
	want := broker.ConsumerConfig{Queue: "svc.things", Concurrency: 4, RetryDelay: 5 * time.Second,
		MaxRetryDelay: time.Minute, MaxAttempts: 12}
	if err != nil || c != want {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	withPrefetch := def
	withPrefetch.PrefetchPerSlot = 2
	if c, err := read(withPrefetch, map[string]string{"SVC_CONCURRENCY": "3"}); err != nil || c.Prefetch != 6 {
		t.Fatalf("prefetch defaults to twice the concurrency: %+v, %v", c, err)
	}
	c, err = read(withPrefetch, map[string]string{"SVC_QUEUE": "q2", "SVC_CONCURRENCY": "2", "SVC_PREFETCH": "8",
		"SVC_RETRY_DELAY": "1s", "SVC_MAX_RETRY_DELAY": "2s", "SVC_MAX_ATTEMPTS": "3"})
	want = broker.ConsumerConfig{Queue: "q2", Concurrency: 2, Prefetch: 8, RetryDelay: time.Second,
		MaxRetryDelay: 2 * time.Second, MaxAttempts: 3}
	if err != nil || c != want {
		t.Fatalf("values: %+v, %v", c, err)
	}
	spec := c.Spec("a.b", "c.d")
	if spec.Name != "q2" || !slices.Equal(spec.Bindings, []string{"a.b", "c.d"}) || spec.Prefetch != 8 ||
		spec.Concurrency != 2 || spec.RetryDelay != time.Second || spec.MaxRetryDelay != 2*time.Second || spec.MaxAttempts != 3 {
		t.Fatalf("spec %+v", spec)
	}

	bounded := def
	bounded.MaxConcurrency = 256
	for _, tc := range []struct {
		name     string
		def      broker.ConsumerDefaults
		env      map[string]string
		variable string
	}{
		{"ErrConcurrencyZero", def, map[string]string{"SVC_CONCURRENCY": "0"}, "SVC_CONCURRENCY: must be at least 1"},
		{"ErrConcurrencyNotNumber", def, map[string]string{"SVC_CONCURRENCY": "many"}, "SVC_CONCURRENCY"},
		{"ErrConcurrencyAboveMax", bounded, map[string]string{"SVC_CONCURRENCY": "257"}, "SVC_CONCURRENCY: must be between 1 and 256"},
		{"ErrPrefetchBelowConcurrency", withPrefetch, map[string]string{"SVC_PREFETCH": "1"}, "SVC_PREFETCH"},
		{"ErrMaxAttemptsZero", def, map[string]string{"SVC_MAX_ATTEMPTS": "0"}, "SVC_MAX_ATTEMPTS"},
		{"ErrRetryDelayZero", def, map[string]string{"SVC_RETRY_DELAY": "0s"}, "SVC_RETRY_DELAY: must be positive"},
		{"ErrRetryDelayAboveMax", def, map[string]string{"SVC_RETRY_DELAY": "10m"}, "SVC_MAX_RETRY_DELAY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := read(tc.def, tc.env); err == nil || !strings.Contains(err.Error(), tc.variable) {
				t.Fatalf("err = %v, want one with %q", err, tc.variable)
			}
		})
	}
}
