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
	// PrefetchPerSlot, when positive, says the service reads
	// <PREFIX>_PREFETCH, whose default is PrefetchPerSlot times the
	// concurrency.
	PrefetchPerSlot int
}

// ConsumerVariables are the names ReadConsumerConfig reads for prefix and
// def, in order.
func ConsumerVariables(prefix string, def ConsumerDefaults) []string {
	suffixes := []string{"QUEUE", "CONCURRENCY", "RETRY_DELAY", "MAX_RETRY_DELAY", "MAX_ATTEMPTS"}
	if def.PrefetchPerSlot > 0 {
		suffixes = append(suffixes, "PREFETCH")
	}
	names := make([]string, len(suffixes))
	for i, s := range suffixes {
		names[i] = prefix + "_" + s
	}
	return names
}

// ReadConsumerConfig reads the variables prefix_QUEUE, prefix_CONCURRENCY,
// prefix_RETRY_DELAY, prefix_MAX_RETRY_DELAY, prefix_MAX_ATTEMPTS (and
// prefix_PREFETCH when def.PrefetchPerSlot > 0) with the defaults def; problems are
// recorded in r, each naming its variable.
func ReadConsumerConfig(r *config.Reader, prefix string, def ConsumerDefaults) ConsumerConfig {
	names := ConsumerVariables(prefix, def)
	queue, concurrency, retryDelay, maxRetryDelay, maxAttempts := names[0], names[1], names[2], names[3], names[4]
	c := ConsumerConfig{
		Queue:         r.String(queue, def.Queue),
		Concurrency:   r.Int(concurrency, def.Concurrency),
		RetryDelay:    r.Duration(retryDelay, def.RetryDelay),
		MaxRetryDelay: r.Duration(maxRetryDelay, def.MaxRetryDelay),
		MaxAttempts:   r.Int(maxAttempts, def.MaxAttempts),
	}
	if c.Queue == "" {
		r.Fail(queue, "must not be empty")
	}
	switch {
	case def.MaxConcurrency > 0 && (c.Concurrency < 1 || c.Concurrency > def.MaxConcurrency):
		r.Fail(concurrency, "must be between 1 and %d", def.MaxConcurrency)
	case c.Concurrency < 1:
		r.Fail(concurrency, "must be at least 1")
	}
	if def.PrefetchPerSlot > 0 {
		prefetch := names[5]
		c.Prefetch = r.Int(prefetch, def.PrefetchPerSlot*c.Concurrency)
		if c.Prefetch < c.Concurrency {
			r.Fail(prefetch, "must be at least %s (%d)", concurrency, c.Concurrency)
		}
	}
	if c.MaxAttempts < 1 {
		r.Fail(maxAttempts, "must be at least 1")
	}
	if c.RetryDelay <= 0 {
		r.Fail(retryDelay, "must be positive")
	}
	if c.MaxRetryDelay < c.RetryDelay {
		r.Fail(maxRetryDelay, "must not be shorter than %s", retryDelay)
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
