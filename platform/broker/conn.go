// Package broker is audiomill's messaging over RabbitMQ (amqp091-go): a
// connection that reconnects by itself, the event envelope, a publisher with
// confirms and mandatory routing, and a consumer with bounded, delayed retries
// and a dead-letter queue. See "Messaging contract" in docs/architecture.md.
//
// Topology. Every event goes through one durable topic exchange, Exchange
// ("audiomill.events"). A consumer's queue <consumer>.<what> is a durable
// quorum queue bound to its routing keys, with two companions:
//
//   - <queue>.retry, a quorum queue nobody consumes: a failed message is
//     republished there with a per-message TTL (QueueSpec.RetryDelay) and,
//     when it expires, RabbitMQ dead-letters it back to <queue>;
//   - <queue>.dead, a quorum queue where a message ends when it failed
//     MaxAttempts times, failed permanently (Permanent) or cannot be decoded.
//     Operators inspect and replay it by hand.
//
// Attempts are counted in our own header, AttemptHeader, that the consumer
// increments each time it republishes to <queue>.retry (x-death is not used:
// its counts are per queue and reason and are not carried by our republish).
// As a last guard against a message that crashes its consumer before any
// ack, the main queue has a quorum delivery limit (DeliveryLimit) past which
// RabbitMQ itself dead-letters it to <queue>.dead. Nothing loops forever.
//
// Declarations are idempotent and repeated after every reconnect. Queue
// arguments hold no configurable value (the retry delay is per message), so
// replicas configured differently never fail on PRECONDITION_FAILED.
//
// Delivery is at least once: a connection lost between a handler's success
// and its ack redelivers the message, so handlers must be idempotent.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Exchange is the durable topic exchange every event is published to.
const Exchange = "audiomill.events"

// Defaults of a Conn's options.
const (
	DefaultConfirmTimeout  = 10 * time.Second
	DefaultMinBackoff      = 200 * time.Millisecond
	DefaultMaxBackoff      = 15 * time.Second
	DefaultHeartbeat       = 10 * time.Second
	DefaultDialTimeout     = 5 * time.Second
	DefaultPublishChannels = 16
)

// Errors a Conn and its publishes return; match them with errors.Is.
var (
	// ErrClosed: the Conn was closed.
	ErrClosed = errors.New("broker: connection closed")
	// ErrNotConnected: the Conn is reconnecting to RabbitMQ right now.
	ErrNotConnected = errors.New("broker: not connected to rabbitmq")
)

// Option changes a Conn's defaults.
type Option func(*options)

type options struct {
	confirmTimeout  time.Duration
	minBackoff      time.Duration
	maxBackoff      time.Duration
	heartbeat       time.Duration
	dialTimeout     time.Duration
	publishChannels int
	name            string
}

// WithConfirmTimeout bounds how long Publish waits for the broker's confirm
// when the caller's context has no earlier deadline (default DefaultConfirmTimeout).
func WithConfirmTimeout(d time.Duration) Option {
	return func(o *options) { o.confirmTimeout = d }
}

// WithBackoff sets the reconnect delays: the first retry waits about lo,
// each next one twice as long, capped at hi (defaults DefaultMinBackoff,
// DefaultMaxBackoff). Every delay has up to 20% random jitter.
func WithBackoff(lo, hi time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = lo, hi }
}

// WithConnectionName names the connection in RabbitMQ's management UI
// (usually the service name).
func WithConnectionName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithPublishChannels sets how many publishes may await their confirm at
// once, each on its own AMQP channel (default DefaultPublishChannels).
func WithPublishChannels(n int) Option {
	return func(o *options) { o.publishChannels = n }
}

// Conn is a connection to RabbitMQ that survives broker restarts: a
// background loop dials, declares the topology, and when the connection
// drops, dials again with capped exponential backoff. Publish and Consume
// use whichever connection is current. It is safe for concurrent use.
type Conn struct {
	url      string
	redacted string
	logger   *slog.Logger
	opts     options
	pub      *publisher

	mu       sync.Mutex
	conn     *amqp.Connection // nil while disconnected
	ready    chan struct{}    // closed while conn is set; replaced when it drops
	lastErr  error            // why the Conn is disconnected
	closed   bool
	topology map[string]QueueSpec // queues to re-declare after each reconnect

	stop chan struct{} // closed by Close
	done chan struct{} // closed when the reconnect loop has returned
}

// Dial validates url, starts the background connection loop and waits for
// its first attempt (bounded by ctx). It returns an error only for an
// invalid URL: when RabbitMQ is down the Conn starts disconnected, Ping
// reports it, and the loop keeps trying, so a service does not depend on
// the order in which it and the broker start. logger receives the state
// changes; the URL's password is never logged.
func Dial(ctx context.Context, rawURL string, logger *slog.Logger, opts ...Option) (*Conn, error) {
	o := options{
		confirmTimeout:  DefaultConfirmTimeout,
		minBackoff:      DefaultMinBackoff,
		maxBackoff:      DefaultMaxBackoff,
		heartbeat:       DefaultHeartbeat,
		dialTimeout:     DefaultDialTimeout,
		publishChannels: DefaultPublishChannels,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.confirmTimeout <= 0 || o.minBackoff <= 0 || o.maxBackoff < o.minBackoff || o.publishChannels <= 0 {
		return nil, errors.New("broker: invalid options: timeouts, backoff and publish channels must be positive, max backoff ≥ min")
	}
	if _, err := amqp.ParseURI(rawURL); err != nil {
		// ParseURI may return a *url.Error that quotes the URL, password included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("broker: invalid AMQP URL: %v", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	c := &Conn{
		url:      rawURL,
		redacted: redact(rawURL),
		logger:   logger.With("component", "rabbitmq"),
		opts:     o,
		ready:    make(chan struct{}),
		topology: make(map[string]QueueSpec),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.pub = newPublisher(c, o.publishChannels)
	first := make(chan struct{})
	go c.run(first)
	select {
	case <-first:
	case <-ctx.Done():
	}
	return c, nil
}

// Ping is the readiness check ("rabbitmq" in /readyz): nil while connected,
// an error naming the cause while reconnecting or after Close.
func (c *Conn) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := c.current()
	return err
}

// Close stops reconnecting and closes the connection, which ends every
// consumer and fails every publish still awaiting its confirm. It waits for
// the background loop until ctx is done.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	close(c.stop)

	var err error
	if conn != nil {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(5 * time.Second)
		}
		if cerr := conn.CloseDeadline(deadline); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = fmt.Errorf("broker: close connection to %s: %w", c.redacted, cerr)
		}
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("broker: close: %w", ctx.Err()))
	}
	c.logger.Info("rabbitmq connection closed")
	return err
}

// current returns the live connection or why there is none.
func (c *Conn) current() (*amqp.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.conn == nil || c.conn.IsClosed() {
		if c.lastErr != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotConnected, c.lastErr)
		}
		return nil, ErrNotConnected
	}
	return c.conn, nil
}

// wait returns the live connection, waiting for the loop to reconnect until
// ctx is done or the Conn is closed.
func (c *Conn) wait(ctx context.Context) (*amqp.Connection, error) {
	for {
		c.mu.Lock()
		closed, conn, ready := c.closed, c.conn, c.ready
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		wake := ready
		if conn != nil {
			// Dropped, but the loop has not noticed yet: poll briefly.
			wake = nil
		}
		select {
		case <-wake:
		case <-time.After(50 * time.Millisecond):
		case <-c.stop:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// run is the connection loop: dial, declare, serve until the connection
// drops, back off, repeat, until Close. first is closed after the first
// attempt, whatever its outcome.
func (c *Conn) run(first chan struct{}) {
	defer close(c.done)
	signalFirst := func() {
		if first != nil {
			close(first)
			first = nil
		}
	}
	defer signalFirst()

	backoff := c.opts.minBackoff
	failures := 0
	for {
		conn, err := c.connect()
		if err != nil {
			failures++
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			delay := jitter(backoff)
			c.logger.Warn("rabbitmq connect failed; retrying", "url", c.redacted,
				"attempt", failures, "retry_in", delay.String(), "err", err.Error())
			signalFirst()
			select {
			case <-time.After(delay):
			case <-c.stop:
				return
			}
			backoff = min(2*backoff, c.opts.maxBackoff)
			continue
		}

		closes := conn.NotifyClose(make(chan *amqp.Error, 1))
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = conn.Close()
			return
		}
		c.conn, c.lastErr = conn, nil
		close(c.ready)
		c.mu.Unlock()
		c.logger.Info("rabbitmq connected", "url", c.redacted, "after_failures", failures)
		failures, backoff = 0, c.opts.minBackoff
		signalFirst()

		reason := c.serve(closes, blocked)
		c.mu.Lock()
		c.conn = nil
		c.ready = make(chan struct{})
		c.lastErr = reason
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		c.logger.Warn("rabbitmq connection lost; reconnecting", "url", c.redacted, "err", reason.Error())
	}
}

// serve waits until the connection drops or Close, logging flow control.
func (c *Conn) serve(closes <-chan *amqp.Error, blocked <-chan amqp.Blocking) error {
	for {
		select {
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			if b.Active {
				c.logger.Warn("rabbitmq blocked the connection; publishes wait", "reason", b.Reason)
			} else {
				c.logger.Info("rabbitmq unblocked the connection")
			}
		case err := <-closes:
			if err == nil {
				return errors.New("connection closed")
			}
			return err
		case <-c.stop:
			return ErrClosed
		}
	}
}

// connect dials and declares the exchange and every registered queue. Only
// a failure to dial or to declare the exchange fails it: a queue that cannot
// be declared is logged, and its consumer keeps retrying on its own.
func (c *Conn) connect() (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	if c.opts.name != "" {
		props.SetClientConnectionName(c.opts.name)
	}
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Heartbeat:  c.opts.heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial:       amqp.DefaultDial(c.opts.dialTimeout),
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.redacted, sanitize(err))
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := declareExchange(ch); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = ch.Close()

	c.mu.Lock()
	specs := make([]QueueSpec, 0, len(c.topology))
	for _, s := range c.topology {
		specs = append(specs, s)
	}
	c.mu.Unlock()
	for _, s := range specs {
		if err := declareOn(conn, s); err != nil {
			c.logger.Error("rabbitmq queue declaration failed", "queue", s.Name, "err", err.Error())
		}
	}
	return conn, nil
}

// DeclareQueue declares the queues of spec (see the package comment) now,
// and again after every reconnect. A publisher declares the queues it
// publishes to, so that its mandatory publishes are routable even before
// the consumer first ran. Consume calls it itself.
func (c *Conn) DeclareQueue(ctx context.Context, spec QueueSpec) error {
	spec, err := spec.withDefaults()
	if err != nil {
		return err
	}
	conn, err := c.wait(ctx)
	if err != nil {
		return fmt.Errorf("declare queue %s: %w", spec.Name, err)
	}
	if err := declareOn(conn, spec); err != nil {
		return err
	}
	c.mu.Lock()
	c.topology[spec.Name] = spec
	c.mu.Unlock()
	return nil
}

// redact returns rawURL with its password replaced by "xxxxx".
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

// sanitize drops the URL from a *url.Error, which may quote the password.
func sanitize(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	var nerr *net.OpError
	if errors.As(err, &nerr) {
		return nerr
	}
	return err
}

// jitter returns d plus up to 20% at random.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/5+1)
}
