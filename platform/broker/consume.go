package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/platform/logging"
)

// Headers the consumer sets on the messages it republishes.
const (
	// AttemptHeader is the attempt the message is at: absent means 1; each
	// republish to <queue>.retry increments it.
	AttemptHeader = "x-audiomill-attempt"
	// ErrorHeader is the handler's last error (truncated to maxErrorHeader bytes).
	ErrorHeader = "x-audiomill-error"
	// ReasonHeader says why a message is in <queue>.dead: "max-attempts",
	// "permanent" or "undecodable".
	ReasonHeader = "x-audiomill-dead-reason"
	// RoutingKeyHeader keeps the routing key the event was published with,
	// which a trip through <queue>.retry replaces by the queue's name.
	RoutingKeyHeader = "x-audiomill-routing-key"
)

// Reasons in ReasonHeader.
const (
	ReasonMaxAttempts = "max-attempts"
	ReasonPermanent   = "permanent"
	ReasonUndecodable = "undecodable"
)

const maxErrorHeader = 1024

// Delivery is one message handed to a Handler.
type Delivery struct {
	Envelope
	// Attempt is 1 the first time the handler sees the message, then 2, …
	// up to the queue's MaxAttempts.
	Attempt int
	// RoutingKey is the key the event was published with.
	RoutingKey string
	// Redelivered is true when RabbitMQ delivers the message again after a
	// consumer failed to ack it (not after a retry): the handler may already
	// have done its work.
	Redelivered bool
}

// Handler handles one delivery. nil acks it; an error retries it after the
// queue's RetryDelay, until MaxAttempts, then dead-letters it; an error
// wrapped by Permanent dead-letters it at once. ctx is cancelled when
// Consume's context is: a delivery whose handler returns after that is put
// back in the queue without counting an attempt.
type Handler func(ctx context.Context, d Delivery) error

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: a Handler returning it sends
// the message straight to <queue>.dead. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Consume declares spec's queues (again after every reconnect), consumes
// the main queue with manual acks, basic.qos spec.Prefetch and
// spec.Concurrency handlers, and routes each result as Handler says. A
// message that is not a valid envelope goes to <queue>.dead unseen by the
// handler. A message is acked only once its copy in <queue>.retry or
// <queue>.dead is confirmed; if that publish fails, the message is requeued.
//
// Consume blocks. It survives connection losses (it waits for the Conn to
// reconnect and subscribes again) and returns nil once ctx is cancelled and
// the handlers in flight have returned, ErrClosed when conn is closed, or an
// error for an invalid spec.
func Consume(ctx context.Context, conn *Conn, spec QueueSpec, handler Handler) error {
	spec, err := spec.withDefaults()
	if err != nil {
		return err
	}
	if handler == nil {
		return fmt.Errorf("broker: consume %s: nil handler", spec.Name)
	}
	// Registered up front, so that a reconnect declares it even when the
	// broker is down now.
	conn.mu.Lock()
	conn.topology[spec.Name] = spec
	conn.mu.Unlock()

	c := &consumer{conn: conn, spec: spec, handler: handler,
		logger: conn.logger.With("queue", spec.Name)}
	backoff := conn.opts.minBackoff
	for {
		subscribed, err := c.session(ctx)
		if ctx.Err() != nil {
			c.logger.Info("consumer stopped")
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return fmt.Errorf("consume %s: %w", spec.Name, err)
		}
		if subscribed {
			backoff = conn.opts.minBackoff
		}
		delay := jitter(backoff)
		c.logger.Warn("consumer interrupted; subscribing again", "retry_in", delay.String(), "err", err.Error())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			c.logger.Info("consumer stopped")
			return nil
		}
		backoff = min(2*backoff, conn.opts.maxBackoff)
	}
}

type consumer struct {
	conn    *Conn
	spec    QueueSpec
	handler Handler
	logger  *slog.Logger
}

// session consumes on one channel until it closes or ctx is cancelled.
// subscribed tells whether it got as far as basic.consume.
func (c *consumer) session(ctx context.Context) (subscribed bool, err error) {
	conn, err := c.conn.wait(ctx)
	if err != nil {
		return false, err
	}
	if err := declareOn(conn, c.spec); err != nil {
		return false, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	// Closing the channel requeues whatever this session leaves unacked.
	defer func() { _ = ch.Close() }()
	if err := ch.Qos(c.spec.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("basic.qos %d: %w", c.spec.Prefetch, err)
	}
	tag := c.spec.Name + "." + NewID()[:12]
	deliveries, err := ch.Consume(c.spec.Name, tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("basic.consume %s: %w", c.spec.Name, err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	c.logger.Info("consuming", "prefetch", c.spec.Prefetch, "concurrency", c.spec.Concurrency,
		"max_attempts", c.spec.MaxAttempts, "retry_delay", c.spec.RetryDelay.String())

	var wg sync.WaitGroup
	for range c.spec.Concurrency {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					c.handle(ctx, ch, d)
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		_ = ch.Cancel(tag, false)
		return true, nil
	}
	select {
	case reason, ok := <-closed:
		if ok && reason != nil {
			return true, fmt.Errorf("channel closed: %w", reason)
		}
	default:
	}
	return true, errors.New("delivery stream ended (connection lost or consumer cancelled by the broker)")
}

// handle runs the handler on d and settles d by its result.
func (c *consumer) handle(ctx context.Context, ch *amqp.Channel, d amqp.Delivery) {
	attempt := attemptOf(d.Headers)
	routingKey := d.RoutingKey
	if rk, ok := d.Headers[RoutingKeyHeader].(string); ok && rk != "" {
		routingKey = rk
	}
	logger := c.logger.With("message_id", d.MessageId, "attempt", attempt)
	if ctx.Err() != nil {
		_ = d.Nack(false, true)
		return
	}

	env, err := DecodeEnvelope(d.Body)
	if err != nil {
		logger.Error("undecodable message; dead-lettering", "routing_key", routingKey, "err", err.Error())
		c.moveTo(ctx, ch, d, c.spec.DeadQueue(), deadHeaders(d, attempt, routingKey, ReasonUndecodable, err), "", logger)
		return
	}

	hctx := ctx
	if env.CorrelationID != "" {
		hctx = logging.WithRequestID(ctx, env.CorrelationID)
	}
	logger = logger.With("type", env.Type, "job_id", env.JobID)
	herr := c.call(hctx, Delivery{Envelope: env, Attempt: attempt, RoutingKey: routingKey, Redelivered: d.Redelivered})
	switch {
	case herr == nil:
		if err := d.Ack(false); err != nil {
			logger.WarnContext(hctx, "ack failed; the message will be redelivered", "err", err.Error())
		}
	case ctx.Err() != nil:
		logger.InfoContext(hctx, "consumer stopping; message requeued", "err", herr.Error())
		_ = d.Nack(false, true)
	case IsPermanent(herr):
		logger.ErrorContext(hctx, "handler failed permanently; dead-lettering", "err", herr.Error())
		c.moveTo(ctx, ch, d, c.spec.DeadQueue(), deadHeaders(d, attempt, routingKey, ReasonPermanent, herr), "", logger)
	case attempt >= c.spec.MaxAttempts:
		logger.ErrorContext(hctx, "handler failed on the last attempt; dead-lettering", "err", herr.Error())
		c.moveTo(ctx, ch, d, c.spec.DeadQueue(), deadHeaders(d, attempt, routingKey, ReasonMaxAttempts, herr), "", logger)
	default:
		delay := c.spec.retryDelay(attempt)
		logger.WarnContext(hctx, "handler failed; retrying later", "retry_in", delay.String(), "err", herr.Error())
		h := copyHeaders(d.Headers)
		h[AttemptHeader] = int32(attempt + 1)
		h[ErrorHeader] = truncate(herr.Error())
		h[RoutingKeyHeader] = routingKey
		expiration := fmt.Sprint(max(delay.Milliseconds(), 1))
		c.moveTo(ctx, ch, d, c.spec.RetryQueue(), h, expiration, logger)
	}
}

// call runs the handler, turning a panic into an error.
func (c *consumer) call(ctx context.Context, d Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.logger.ErrorContext(ctx, "handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return c.handler(ctx, d)
}

// moveTo publishes a copy of d to queue (through the default exchange) with
// headers, waits for the confirm, and only then acks d. If the copy cannot
// be published, d is requeued; if the consuming channel is already gone,
// nothing is published, since RabbitMQ redelivers d anyway.
func (c *consumer) moveTo(ctx context.Context, ch *amqp.Channel, d amqp.Delivery, queue string, headers amqp.Table, expiration string, logger *slog.Logger) {
	if ch.IsClosed() {
		logger.Warn("channel closed before the message was settled; it will be redelivered", "to", queue)
		return
	}
	msg := amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		CorrelationId:   d.CorrelationId,
		Expiration:      expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
	// Not cancelled with ctx: a settlement under way is finished at
	// shutdown, bounded by the confirm timeout.
	if err := c.conn.pub.publish(context.WithoutCancel(ctx), "", queue, msg); err != nil {
		logger.Warn("could not move message; requeued", "to", queue, "err", err.Error())
		_ = d.Nack(false, true)
		return
	}
	if err := d.Ack(false); err != nil {
		logger.Warn("ack failed after the message was moved; it will be delivered again", "to", queue, "err", err.Error())
	}
}

func deadHeaders(d amqp.Delivery, attempt int, routingKey, reason string, cause error) amqp.Table {
	h := copyHeaders(d.Headers)
	h[AttemptHeader] = int32(attempt)
	h[ReasonHeader] = reason
	h[ErrorHeader] = truncate(cause.Error())
	h[RoutingKeyHeader] = routingKey
	return h
}

// copyHeaders copies h without the headers RabbitMQ manages itself on
// dead-lettering and quorum deliveries.
func copyHeaders(h amqp.Table) amqp.Table {
	out := make(amqp.Table, len(h)+4)
	for k, v := range h {
		if k == "x-death" || k == "x-delivery-count" ||
			strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") {
			continue
		}
		out[k] = v
	}
	return out
}

// attemptOf reads AttemptHeader; absent or invalid means 1.
func attemptOf(h amqp.Table) int {
	var n int64
	switch v := h[AttemptHeader].(type) {
	case int8:
		n = int64(v)
	case int16:
		n = int64(v)
	case int32:
		n = int64(v)
	case int64:
		n = v
	case int:
		n = int64(v)
	case uint8:
		n = int64(v)
	case uint16:
		n = int64(v)
	case uint32:
		n = int64(v)
	}
	if n < 1 || n > 1<<20 {
		return 1
	}
	return int(n)
}

func truncate(s string) string {
	if len(s) <= maxErrorHeader {
		return s
	}
	return strings.ToValidUTF8(s[:maxErrorHeader], "")
}
