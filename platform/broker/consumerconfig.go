package broker

import (
	"time"

	"github.com/audiomill/audiomill/platform/config"
)

// ConsumerConfig is how a service consumes its queue: which queue, how many
// deliveries it handles at once, and how it retries them. A service reads it
// from its variables with ReadConsumerConfig.
type ConsumerConfig struct {
	// Queue is consumed, with Queue.retry and Queue.dead (<PREFIX>_QUEUE;
	// tests use their own).
	Queue string
	// Concurrency is how many deliveries are handled at once
	// (<PREFIX>_CONCURRENCY).
	Concurrency int
	// Prefetch is how many messages the broker hands over unacked
	// (<PREFIX>_PREFETCH, for a service that reads it; at least
	// Concurrency); 0 means Concurrency.
	Prefetch int
	// RetryDelay is how long a message waits before the next attempt after
	// a transient failure (<PREFIX>_RETRY_DELAY); it doubles after each
	// further failure up to MaxRetryDelay (<PREFIX>_MAX_RETRY_DELAY).
	RetryDelay, MaxRetryDelay time.Duration
	// MaxAttempts bounds the attempts before a message goes to Queue.dead
	// (<PREFIX>_MAX_ATTEMPTS).
	MaxAttempts int
}

// ConsumerDefaults are a service's defaults of its ConsumerConfig.
type ConsumerDefaults struct {
	Queue                     string
	Concurrency               int
	RetryDelay, MaxRetryDelay time.Duration
	MaxAttempts               int
	// MaxConcurrency, when positive, is the largest <PREFIX>_CONCURRENCY
	// accepted.
	MaxConcurrency int
	// Prefetch says the service reads <PREFIX>_PREFETCH (default the
	// concurrency).
	Prefetch bool
}

// ReadConsumerConfig reads the variables prefix_QUEUE, prefix_CONCURRENCY,
// prefix_RETRY_DELAY, prefix_MAX_RETRY_DELAY, prefix_MAX_ATTEMPTS (and
// prefix_PREFETCH when def.Prefetch) with the defaults def; problems are
// recorded in r, each naming its variable.
func ReadConsumerConfig(r *config.Reader, prefix string, def ConsumerDefaults) ConsumerConfig {
	name := func(s string) string { return prefix + "_" + s }
	c := ConsumerConfig{
		Queue:         r.String(name("QUEUE"), def.Queue),
		Concurrency:   r.Int(name("CONCURRENCY"), def.Concurrency),
		RetryDelay:    r.Duration(name("RETRY_DELAY"), def.RetryDelay),
		MaxRetryDelay: r.Duration(name("MAX_RETRY_DELAY"), def.MaxRetryDelay),
		MaxAttempts:   r.Int(name("MAX_ATTEMPTS"), def.MaxAttempts),
	}
	if c.Queue == "" {
		r.Fail(name("QUEUE"), "must not be empty")
	}
	switch {
	case def.MaxConcurrency > 0 && (c.Concurrency < 1 || c.Concurrency > def.MaxConcurrency):
		r.Fail(name("CONCURRENCY"), "must be between 1 and %d", def.MaxConcurrency)
	case c.Concurrency < 1:
		r.Fail(name("CONCURRENCY"), "must be at least 1")
	}
	if def.Prefetch {
		c.Prefetch = r.Int(name("PREFETCH"), c.Concurrency)
		if c.Prefetch < c.Concurrency {
			r.Fail(name("PREFETCH"), "must be at least %s (%d)", name("CONCURRENCY"), c.Concurrency)
		}
	}
	if c.MaxAttempts < 1 {
		r.Fail(name("MAX_ATTEMPTS"), "must be at least 1")
	}
	if c.RetryDelay <= 0 {
		r.Fail(name("RETRY_DELAY"), "must be positive")
	}
	if c.MaxRetryDelay < c.RetryDelay {
		r.Fail(name("MAX_RETRY_DELAY"), "must not be shorter than %s", name("RETRY_DELAY"))
	}
	return c
}

// Spec is the QueueSpec of c, its queue bound to bindings.
func (c ConsumerConfig) Spec(bindings ...string) QueueSpec {
	return QueueSpec{
		Name: c.Queue, Bindings: bindings,
		Prefetch: c.Prefetch, Concurrency: c.Concurrency,
		RetryDelay: c.RetryDelay, MaxRetryDelay: c.MaxRetryDelay, MaxAttempts: c.MaxAttempts,
	}
}
