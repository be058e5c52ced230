package service

import (
	"context"
	"fmt"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// DefaultAMQPURL is the RabbitMQ URL when AMQP_URL is unset.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

// Broker connects to RabbitMQ (AMQP_URL), adds it to /readyz as "rabbitmq"
// and closes it at shutdown.
//
// An invalid AMQP_URL fails start-up (exit 2, naming the variable). An
// unreachable broker does not: the service starts, reports not-ready, and
// the connection keeps retrying in the background, so services survive
// broker restarts and do not depend on start order. Consumers started with
// broker.Consume wait for the connection.
func (a *App) Broker(ctx context.Context) (*broker.Conn, error) {
	return a.broker(ctx, false)
}

// BrokerOptional is Broker for a service that keeps serving while RabbitMQ
// is away (the gateway: accepted uploads wait in its outbox and the relay
// publishes them later): /readyz reports "rabbitmq": "degraded" instead of
// failing, so Consul and the edge keep sending requests.
func (a *App) BrokerOptional(ctx context.Context) (*broker.Conn, error) {
	return a.broker(ctx, true)
}

func (a *App) broker(ctx context.Context, optional bool) (*broker.Conn, error) {
	url := a.Env.URL("AMQP_URL", DefaultAMQPURL, "amqp", "amqps")
	if err := a.Env.Err(); err != nil {
		return nil, err
	}
	conn, err := broker.Dial(ctx, url, a.Logger, broker.WithConnectionName(a.Name))
	if err != nil {
		return nil, fmt.Errorf("rabbitmq (AMQP_URL): %w", err)
	}
	a.Server.AddCheck(httpapi.Check{Name: "rabbitmq", Ping: conn.Ping, Optional: optional})
	a.OnClose("rabbitmq", conn.Close)
	return conn, nil
}
