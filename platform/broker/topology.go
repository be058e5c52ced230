package broker

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Defaults of a QueueSpec.
const (
	DefaultConcurrency = 1
	DefaultMaxAttempts = 5
	DefaultRetryDelay  = 10 * time.Second
)

// DeliveryLimit is the quorum delivery limit of every main queue: a message
// handed out this many times without being acked (its consumer crashed or
// lost its connection each time) is dead-lettered by RabbitMQ to <queue>.dead.
// It is far above DefaultMaxAttempts because handler failures are counted by
// AttemptHeader, not by redeliveries.
const DeliveryLimit = 20

// Suffixes of a queue's retry and dead-letter queues.
const (
	RetrySuffix = ".retry"
	DeadSuffix  = ".dead"
)

// maxQueueName leaves room for the suffixes within AMQP's 255-byte names.
const maxQueueName = maxShortString - len(RetrySuffix)

// QueueSpec describes a consumer's queue.
type QueueSpec struct {
	// Name is <consumer>.<what>, e.g. "converter.video-uploaded".
	Name string
	// Bindings are the routing keys (topic patterns allowed) bound from Exchange.
	Bindings []string
	// Prefetch is how many unacked messages the broker hands this consumer
	// (basic.qos); default Concurrency.
	Prefetch int
	// Concurrency is how many handlers run at once; default DefaultConcurrency.
	Concurrency int
	// RetryDelay is how long a failed message waits in <Name>.retry before
	// it is delivered again; default DefaultRetryDelay.
	RetryDelay time.Duration
	// MaxRetryDelay, when set, makes the delay grow: RetryDelay after the
	// first failure, doubling after each next one, up to MaxRetryDelay. All
	// retries share one queue whose messages expire from its head, so a
	// message may wait behind a longer one: never longer than MaxRetryDelay.
	MaxRetryDelay time.Duration
	// MaxAttempts is how many times the handler sees a message before it
	// goes to <Name>.dead; default DefaultMaxAttempts.
	MaxAttempts int
}

// retryDelay is the wait before the delivery numbered attempt+1, after the
// handler failed on delivery attempt (1-based).
func (s QueueSpec) retryDelay(attempt int) time.Duration {
	d := s.RetryDelay
	for range attempt - 1 {
		if d >= s.MaxRetryDelay/2 {
			return s.MaxRetryDelay
		}
		d *= 2
	}
	return min(d, s.MaxRetryDelay)
}

// RetryQueue is the name of the spec's delayed-retry queue.
func (s QueueSpec) RetryQueue() string { return s.Name + RetrySuffix }

// DeadQueue is the name of the spec's dead-letter queue.
func (s QueueSpec) DeadQueue() string { return s.Name + DeadSuffix }

// withDefaults validates s and fills in its defaults.
func (s QueueSpec) withDefaults() (QueueSpec, error) {
	var problems []error
	if s.Name == "" {
		problems = append(problems, errors.New("name is required"))
	} else if len(s.Name) > maxQueueName {
		problems = append(problems, fmt.Errorf("name is longer than %d bytes", maxQueueName))
	}
	if len(s.Bindings) == 0 {
		problems = append(problems, errors.New("at least one binding is required"))
	}
	for _, b := range s.Bindings {
		if b == "" || len(b) > maxShortString {
			problems = append(problems, fmt.Errorf("binding %q is empty or too long", b))
		}
	}
	if s.Prefetch < 0 || s.Concurrency < 0 || s.MaxAttempts < 0 || s.RetryDelay < 0 || s.MaxRetryDelay < 0 {
		problems = append(problems, errors.New("prefetch, concurrency, max attempts and retry delay must not be negative"))
	}
	if len(problems) > 0 {
		return s, fmt.Errorf("broker: queue spec %q: %w", s.Name, errors.Join(problems...))
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if s.Prefetch == 0 {
		s.Prefetch = s.Concurrency
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.RetryDelay == 0 {
		s.RetryDelay = DefaultRetryDelay
	}
	if s.MaxRetryDelay < s.RetryDelay {
		s.MaxRetryDelay = s.RetryDelay
	}
	s.Bindings = append([]string(nil), s.Bindings...)
	return s, nil
}

func declareExchange(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Exchange, err)
	}
	return nil
}

// declareOn declares the exchange and spec's three queues and bindings on a
// channel of its own (a failed declaration closes the channel).
func declareOn(conn *amqp.Connection, spec QueueSpec) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("declare queue %s: open channel: %w", spec.Name, err)
	}
	defer func() { _ = ch.Close() }()
	if err := declareExchange(ch); err != nil {
		return err
	}
	queues := []struct {
		name string
		args amqp.Table
	}{
		{spec.DeadQueue(), amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}},
		{spec.Name, amqp.Table{
			amqp.QueueTypeArg: amqp.QueueTypeQuorum,
			// Safety net only: the consumer routes failures itself.
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": spec.DeadQueue(),
			"x-delivery-limit":          int32(DeliveryLimit),
		}},
		{spec.RetryQueue(), amqp.Table{
			amqp.QueueTypeArg: amqp.QueueTypeQuorum,
			// Expired messages (per-message TTL = the retry delay) go back
			// to the main queue, and are kept until it has taken them.
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": spec.Name,
			"x-dead-letter-strategy":    "at-least-once",
			"x-overflow":                "reject-publish",
		}},
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return fmt.Errorf("declare queue %s: %w", q.name, err)
		}
	}
	for _, key := range spec.Bindings {
		if err := ch.QueueBind(spec.Name, key, Exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %s to %s: %w", spec.Name, key, err)
		}
	}
	return nil
}
