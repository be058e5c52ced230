package testenv

import (
	"errors"
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// WithAMQPChannel runs fn on a channel of a fresh connection to the broker
// at url (test set-up, inspection and clean-up outside the code under
// test) and closes both afterwards.
func WithAMQPChannel(url string, fn func(*amqp.Channel) error) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("testenv: dial RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("testenv: open a channel: %w", err)
	}
	defer ch.Close()
	return fn(ch)
}

// PublishRaw publishes msg as is to exchange with key (mandatory, with a
// publisher confirm), past the checks of the code under test: for messages
// it would refuse to send. A failure fails tb.
func PublishRaw(tb testing.TB, url, exchange, key string, msg amqp.Publishing) {
	tb.Helper()
	err := WithAMQPChannel(url, func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, true, false, msg)
		if err != nil {
			return err
		}
		if !dc.Wait() {
			return errors.New("nacked")
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("raw publish: %v", err)
	}
}

// DeleteQueues deletes the named queues of the broker at url, the ones a
// test declared for itself (best effort: clean-up must not fail a test that
// passed). Each goes on a channel of its own, since a failed delete closes
// the channel.
func DeleteQueues(url string, names ...string) {
	for _, name := range names {
		_ = WithAMQPChannel(url, func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(name, false, false, false)
			return err
		})
	}
}
