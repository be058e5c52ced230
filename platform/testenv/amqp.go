package testenv

import (
	"fmt"

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
