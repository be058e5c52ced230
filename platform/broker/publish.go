package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Errors of Publish besides ErrClosed, ErrNotConnected and the context's;
// match them with errors.Is.
var (
	// ErrUnroutable: no queue is bound to the routing key, so the broker
	// returned the message (mandatory flag). Nothing was stored.
	ErrUnroutable = errors.New("broker: message unroutable")
	// ErrNacked: the broker refused the message (basic.nack).
	ErrNacked = errors.New("broker: message nacked by broker")
	// ErrConfirmLost: the channel or connection closed before the confirm
	// arrived. The message may or may not be stored: publish it again.
	ErrConfirmLost = errors.New("broker: connection lost before confirm")
)

// Publish publishes env to Exchange with routingKey and waits for the
// broker's confirm. The message is persistent, mandatory, JSON, with
// message id env.ID. It returns nil only when the broker confirmed that it
// has the message in every queue it was routed to; otherwise an error
// (invalid envelope, ErrNotConnected, ErrClosed, ErrUnroutable, ErrNacked,
// ErrConfirmLost, or the context's error when ctx or the confirm timeout
// ends first). It does not wait for a reconnect: during an outage it fails
// at once, and the caller's relay publishes again later. Safe for
// concurrent use.
func (c *Conn) Publish(ctx context.Context, routingKey string, env Envelope) error {
	body, err := env.Encode()
	if err != nil {
		return fmt.Errorf("publish %s: %w", routingKey, err)
	}
	msg := amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		MessageId:     env.ID,
		Type:          env.Type,
		CorrelationId: env.CorrelationID,
		Timestamp:     env.OccurredAt,
		Body:          body,
	}
	if err := c.pub.publish(ctx, Exchange, routingKey, msg); err != nil {
		return fmt.Errorf("publish %s %s (id %s): %w", routingKey, env.Type, env.ID, err)
	}
	return nil
}

// publisher runs confirmed, mandatory publishes.
//
// How returns are matched with confirms: each publish takes an AMQP channel
// of its own (from a pool of idle ones) and is the only message in flight
// on it until its confirm arrives. RabbitMQ sends basic.return for an
// unroutable mandatory message before its basic.ack, and amqp091 dispatches
// both, in that order, from the one goroutine that reads the connection,
// into our buffered channels. So once the ack is read, a return for this
// message, if there is one, is already in the returns buffer: a non-blocking
// read tells unroutable from delivered, with no id bookkeeping. Concurrency
// comes from the pool: up to WithPublishChannels publishes in flight.
//
// A channel whose publish ended without its confirm (timeout, cancelled
// context) still has a confirm coming, so it is closed, never reused.
// Channels of a dropped connection are discarded as they are met.
type publisher struct {
	c     *Conn
	slots chan struct{} // one token per publish in flight

	mu   sync.Mutex
	idle []*pubChannel
}

type pubChannel struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	confirms chan amqp.Confirmation
	returns  chan amqp.Return
}

func newPublisher(c *Conn, channels int) *publisher {
	return &publisher{c: c, slots: make(chan struct{}, channels)}
}

func (p *publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(ctx, p.c.opts.confirmTimeout)
	defer cancel()

	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for a publish channel: %w", ctx.Err())
	}
	defer func() { <-p.slots }()

	pc, err := p.get()
	if err != nil {
		return err
	}
	if err := pc.ch.PublishWithContext(ctx, exchange, key, true, false, msg); err != nil {
		p.discard(pc)
		if errors.Is(err, amqp.ErrClosed) {
			return fmt.Errorf("%w: %v", ErrConfirmLost, err)
		}
		return err
	}

	select {
	case conf, ok := <-pc.confirms:
		if !ok {
			return ErrConfirmLost
		}
		// The return, if any, was dispatched before the ack (see publisher).
		select {
		case ret, ok := <-pc.returns:
			if ok {
				p.put(pc)
				return fmt.Errorf("%w: %d %s (exchange %q, routing key %q)",
					ErrUnroutable, ret.ReplyCode, ret.ReplyText, ret.Exchange, ret.RoutingKey)
			}
			// Closed just after the ack with no return buffered before
			// it: the message was routed and confirmed.
			if conf.Ack {
				return nil
			}
			return ErrNacked
		default:
		}
		if !conf.Ack {
			p.put(pc)
			return ErrNacked
		}
		p.put(pc)
		return nil
	case <-ctx.Done():
		p.discard(pc)
		return fmt.Errorf("wait for confirm: %w", ctx.Err())
	}
}

// get returns an idle channel of the current connection, or opens one.
func (p *publisher) get() (*pubChannel, error) {
	conn, err := p.c.current()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if pc.conn == conn && !pc.ch.IsClosed() {
			p.mu.Unlock()
			return pc, nil
		}
		go func() { _ = pc.ch.Close() }()
	}
	p.mu.Unlock()

	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("%w: open channel: %v", ErrNotConnected, err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("%w: confirm mode: %v", ErrNotConnected, err)
	}
	// One message in flight per channel: a buffer of one never blocks
	// amqp091's reader.
	return &pubChannel{
		conn:     conn,
		ch:       ch,
		confirms: ch.NotifyPublish(make(chan amqp.Confirmation, 1)),
		returns:  ch.NotifyReturn(make(chan amqp.Return, 1)),
	}, nil
}

func (p *publisher) put(pc *pubChannel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, pc)
}

// discard closes pc in the background: a channel close waits for the
// broker's close-ok, which the caller need not wait for.
func (p *publisher) discard(pc *pubChannel) {
	go func() { _ = pc.ch.Close() }()
}
