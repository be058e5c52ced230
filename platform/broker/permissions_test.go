package broker_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// rabbitAdmin creates, through the management API (RABBITMQ_MANAGEMENT_URL,
// default http://<AMQP host>:15672, with the AMQP URL's credentials), a vhost
// of the test's own and users on it with the permissions
// scripts/rabbitmq-users gives the services; all deleted when tb ends.
type rabbitAdmin struct {
	tb        testing.TB
	base      *url.URL // AMQP URL of the admin user
	mgmt      string
	user, pwd string
	vhost     string
}

func newRabbitAdmin(tb testing.TB) *rabbitAdmin {
	tb.Helper()
	u, err := url.Parse(testenv.AMQPURL(tb))
	if err != nil {
		tb.Fatalf("AMQP_URL: %v", err)
	}
	a := &rabbitAdmin{tb: tb, base: u, user: "guest", pwd: "guest", mgmt: os.Getenv("RABBITMQ_MANAGEMENT_URL")}
	if u.User != nil {
		a.user = u.User.Username()
		a.pwd, _ = u.User.Password()
	}
	if a.mgmt == "" {
		a.mgmt = "http://" + net.JoinHostPort(u.Hostname(), "15672")
	}
	a.vhost = "audiomill-permtest-" + testenv.RandomHex(tb, 6)
	a.call(http.MethodPut, "/api/vhosts/"+a.vhost, nil)
	tb.Cleanup(func() { a.call(http.MethodDelete, "/api/vhosts/"+a.vhost, nil) })
	a.call(http.MethodPut, "/api/permissions/"+a.vhost+"/"+url.PathEscape(a.user), map[string]string{"configure": ".*", "write": ".*", "read": ".*"})
	return a
}

func (a *rabbitAdmin) call(method, path string, body any) {
	a.tb.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, a.mgmt+path, r)
	if err != nil {
		a.tb.Fatal(err)
	}
	req.SetBasicAuth(a.user, a.pwd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		a.tb.Fatalf("RabbitMQ management API (RABBITMQ_MANAGEMENT_URL, %s): %s %s: %v", a.mgmt, method, path, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 && !(method == http.MethodDelete && resp.StatusCode == http.StatusNotFound) {
		a.tb.Fatalf("RabbitMQ management API: %s %s: %s", method, path, resp.Status)
	}
}

// service creates a user of the test's own with the permissions of
// service in scripts/rabbitmq-users and returns its AMQP URL.
func (a *rabbitAdmin) service(service string) string {
	a.tb.Helper()
	p := testenv.RabbitMQUser(a.tb, service)
	name, pwd := "audiomill-permtest-"+service+"-"+testenv.RandomHex(a.tb, 6), testenv.RandomHex(a.tb, 6)
	a.call(http.MethodPut, "/api/users/"+name, map[string]string{"password": pwd, "tags": ""})
	a.tb.Cleanup(func() { a.call(http.MethodDelete, "/api/users/"+name, nil) })
	a.call(http.MethodPut, "/api/permissions/"+a.vhost+"/"+name, map[string]string{"configure": p.Configure, "write": p.Write, "read": p.Read})
	u := *a.base
	u.User = url.UserPassword(name, pwd)
	u.Path = "/" + a.vhost
	return u.String()
}

// refused reports whether err is RabbitMQ's ACCESS_REFUSED (403).
func refused(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.AccessRefused
}

// publishAs publishes to exchange with key on a fresh channel of conn and
// returns the broker's verdict (a refusal closes the channel).
func publishAs(tb testing.TB, conn *amqp.Connection, exchange, key string) error {
	tb.Helper()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = ch.Close() }()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	dc, err := ch.PublishWithDeferredConfirmWithContext(testenv.Context(tb, 10*time.Second), exchange, key, false, false, amqp.Publishing{Body: []byte("x")})
	if err != nil {
		return err
	}
	select {
	case e := <-closed:
		if e == nil {
			return errors.New("channel closed")
		}
		return e
	case <-dc.Done():
		if !dc.Acked() {
			return errors.New("nacked")
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("no confirm within 10s")
	}
}

// consumeAs starts a consumer on queue on a fresh channel of conn.
func consumeAs(tb testing.TB, conn *amqp.Connection, queue string) error {
	tb.Helper()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = ch.Close() }()
	_, err = ch.Consume(queue, "", false, false, false, false, nil)
	return err
}

// Each service's RabbitMQ user (scripts/rabbitmq-users, what `make up` and
// compose create) declares, binds, consumes and retries its own queues and
// publishes where it must; the notifier's cannot publish to the exchange
// the gateway and the converter publish to, nor consume the converter's
// queue, nor declare a queue of another service's. auth's publishes its
// account events and nothing else: no queue of its own or another's, no
// consuming, no default exchange.
func TestServiceUsersPermissions(t *testing.T) {
	a := newRabbitAdmin(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := testenv.Context(t, time.Minute)
	dial := func(u string) *amqp.Connection {
		t.Helper()
		conn, err := amqp.Dial(u)
		if err != nil {
			t.Fatalf("dial %s: %v", strings.SplitN(u, "@", 2)[len(strings.SplitN(u, "@", 2))-1], err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	queues := map[string]broker.QueueSpec{
		"gateway":   {Name: "gateway.job-status", Bindings: []string{"audio.*"}},
		"converter": {Name: "converter.video-uploaded", Bindings: []string{"video.uploaded"}},
		"notifier": {Name: "notifier.audio", Bindings: []string{"audio.ready", "audio.failed",
			events.TypeAccountVerify, events.TypeAccountExists}},
	}
	urls := map[string]string{}
	for _, svc := range []string{"gateway", "converter", "notifier"} {
		urls[svc] = a.service(svc)
		t.Run(svc, func(t *testing.T) {
			c, err := broker.Dial(ctx, urls[svc], logger)
			if err != nil {
				t.Fatalf("%s's user cannot connect: %v", svc, err)
			}
			defer func() { _ = c.Close(ctx) }()
			if err := c.DeclareQueue(ctx, queues[svc]); err != nil {
				t.Fatalf("%s's user cannot declare its queues: %v", svc, err)
			}
			conn := dial(urls[svc])
			if err := consumeAs(t, conn, queues[svc].Name); err != nil {
				t.Fatalf("%s's user cannot consume its queue: %v", svc, err)
			}
			if err := publishAs(t, conn, "", queues[svc].RetryQueue()); err != nil {
				t.Fatalf("%s's user cannot move a message to its retry queue: %v", svc, err)
			}
			if err := publishAs(t, conn, "", queues[svc].Name+broker.DeadSuffix); err != nil {
				t.Fatalf("%s's user cannot dead-letter a message: %v", svc, err)
			}
		})
	}
	for _, svc := range []string{"gateway", "converter"} {
		if err := publishAs(t, dial(urls[svc]), broker.Exchange, "x.y"); err != nil {
			t.Fatalf("%s's user cannot publish to %s: %v", svc, broker.Exchange, err)
		}
	}

	notifier := dial(urls["notifier"])
	t.Run("ErrNotifierPublishesEvents", func(t *testing.T) {
		for _, key := range []string{"video.uploaded", "audio.ready"} {
			if err := publishAs(t, notifier, broker.Exchange, key); !refused(err) {
				t.Fatalf("the notifier's user publishing %s to %s: %v, want ACCESS_REFUSED", key, broker.Exchange, err)
			}
		}
	})
	t.Run("ErrNotifierConsumesTheConvertersQueue", func(t *testing.T) {
		for _, q := range []string{"converter.video-uploaded", "converter.video-uploaded.dead", "gateway.job-status"} {
			if err := consumeAs(t, notifier, q); !refused(err) {
				t.Fatalf("the notifier's user consuming %s: %v, want ACCESS_REFUSED", q, err)
			}
		}
	})
	t.Run("ErrNotifierDeclaresOthersQueues", func(t *testing.T) {
		ch, err := notifier.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ch.Close() }()
		if _, err := ch.QueueDeclare("converter.planted", true, false, false, false, nil); !refused(err) {
			t.Fatalf("the notifier's user declaring converter.planted: %v, want ACCESS_REFUSED", err)
		}
	})

	// auth: dials as broker.Dial does (declaring the exchange) and publishes
	// what the sign-up publishes, confirmed and routed to the notifier's queue.
	urls["auth"] = a.service("auth")
	t.Run("auth", func(t *testing.T) {
		c, err := broker.Dial(ctx, urls["auth"], logger)
		if err != nil {
			t.Fatalf("auth's user cannot connect (and declare %s): %v", broker.Exchange, err)
		}
		defer func() { _ = c.Close(ctx) }()
		for _, p := range []events.Payload{
			events.AccountVerify{UserID: "u1", Email: "a@example.com", Token: "t1", ExpiresAt: time.Now().Add(time.Hour)},
			events.AccountExists{UserID: "u1", Email: "a@example.com"},
		} {
			env, err := broker.NewEnvelope(p.EventType(), "email-"+broker.NewID(), "req-1", p)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Publish(ctx, p.EventType(), env); err != nil {
				t.Fatalf("auth's user cannot publish %s: %v", p.EventType(), err)
			}
		}
	})
	auth := dial(urls["auth"])
	t.Run("ErrAuthConsumes", func(t *testing.T) {
		for _, q := range []string{"notifier.audio", "notifier.audio.dead", "gateway.job-status", "converter.video-uploaded"} {
			if err := consumeAs(t, auth, q); !refused(err) {
				t.Fatalf("auth's user consuming %s: %v, want ACCESS_REFUSED", q, err)
			}
		}
	})
	t.Run("ErrAuthDeclaresQueues", func(t *testing.T) {
		for _, q := range []string{"notifier.planted", "auth.mine", "notifier.audio"} {
			ch, err := auth.Channel()
			if err != nil {
				t.Fatal(err)
			}
			_, err = ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
			_ = ch.Close()
			if !refused(err) {
				t.Fatalf("auth's user declaring %s: %v, want ACCESS_REFUSED", q, err)
			}
		}
	})
	t.Run("ErrAuthPublishesToTheDefaultExchange", func(t *testing.T) {
		for _, q := range []string{"notifier.audio", "notifier.audio" + broker.RetrySuffix, "converter.video-uploaded"} {
			if err := publishAs(t, auth, "", q); !refused(err) {
				t.Fatalf("auth's user publishing to amq.default (queue %s): %v, want ACCESS_REFUSED", q, err)
			}
		}
	})
	t.Run("ErrConverterConsumesTheNotifiersQueue", func(t *testing.T) {
		if err := consumeAs(t, dial(urls["converter"]), "notifier.audio"); !refused(err) {
			t.Fatalf("the converter's user consuming notifier.audio: %v, want ACCESS_REFUSED", err)
		}
	})
}
