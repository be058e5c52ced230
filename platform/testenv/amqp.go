package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

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

// VHost creates a RabbitMQ virtual host of the test's own through the
// management API (RABBITMQ_MANAGEMENT_URL, default http://<AMQP host>:15672,
// with the AMQP URL's credentials) and returns the AMQP URL of it; it is
// deleted, with every queue in it, when tb ends. What the code under test
// publishes there reaches only the test's queues.
func VHost(tb testing.TB) string {
	tb.Helper()
	u, err := url.Parse(AMQPURL(tb))
	if err != nil {
		tb.Fatalf("AMQP_URL: %v", err)
	}
	user, pass := "guest", "guest"
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	mgmt := os.Getenv("RABBITMQ_MANAGEMENT_URL")
	if mgmt == "" {
		mgmt = "http://" + net.JoinHostPort(u.Hostname(), "15672")
	}
	name := "audiomill-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	call := func(method, path, body string) error {
		req, err := http.NewRequest(method, mgmt+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.SetBasicAuth(user, pass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return nil
	}
	if err := call(http.MethodPut, "/api/vhosts/"+name, ""); err != nil {
		tb.Fatalf("RabbitMQ management API (RABBITMQ_MANAGEMENT_URL, %s): create vhost: %v", mgmt, err)
	}
	tb.Cleanup(func() { _ = call(http.MethodDelete, "/api/vhosts/"+name, "") })
	if err := call(http.MethodPut, "/api/permissions/"+name+"/"+url.PathEscape(user), `{"configure":".*","write":".*","read":".*"}`); err != nil {
		tb.Fatalf("RabbitMQ management API: permissions on %s: %v", name, err)
	}
	u.Path = "/" + name
	return u.String()
}

// BindQueue declares the events exchange (audiomill.events, as the
// services declare it) and a queue named name bound to it with keys, on
// the broker at amqpURL (a test's VHost), so that what is published with
// those keys is routed and kept for NextMessage.
func BindQueue(tb testing.TB, amqpURL, name string, keys ...string) {
	tb.Helper()
	err := WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare("audiomill.events", amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			return err
		}
		for _, k := range keys {
			if err := ch.QueueBind(name, k, "audiomill.events", false, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("testenv: bind queue %s: %v", name, err)
	}
}

// NextMessage waits up to timeout for a message on queue and returns its
// body (acknowledged); it fails tb when none comes.
func NextMessage(tb testing.TB, amqpURL, queue string, timeout time.Duration) []byte {
	tb.Helper()
	var body []byte
	Eventually(tb, timeout, func() bool {
		err := WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
			d, ok, err := ch.Get(queue, true)
			if ok {
				body = d.Body
			}
			return err
		})
		return err == nil && body != nil
	}, "no message on %s within %s", queue, timeout)
	return body
}

// QueueLen returns how many messages wait on queue.
func QueueLen(tb testing.TB, amqpURL, queue string) int {
	tb.Helper()
	n := 0
	err := WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	if err != nil {
		tb.Fatalf("testenv: queue %s: %v", queue, err)
	}
	return n
}
