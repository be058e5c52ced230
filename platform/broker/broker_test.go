package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/testenv"
)

// dial opens a broker.Conn on url for the test and closes it at its end.
func dial(tb testing.TB, url string, opts ...broker.Option) *broker.Conn {
	tb.Helper()
	logger := slog.New(slog.NewJSONHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]broker.Option{broker.WithBackoff(50*time.Millisecond, time.Second), broker.WithConnectionName(tb.Name())}, opts...)
	conn, err := broker.Dial(testenv.Context(tb, 10*time.Second), url, logger, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := conn.Close(ctx); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	if err := conn.Ping(context.Background()); err != nil {
		tb.Fatalf("RabbitMQ at %s: not connected after Dial: %v", testenv.DefaultAMQPURL, err)
	}
	return conn
}

// admin is a plain amqp091 connection to inspect queues with, behind the
// package's back.
type admin struct {
	tb   testing.TB
	url  string
	mu   sync.Mutex
	conn *amqp.Connection
}

func newAdmin(tb testing.TB, url string) *admin {
	tb.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		tb.Fatalf("admin connection to RabbitMQ: %v", err)
	}
	a := &admin{tb: tb, url: url, conn: conn}
	tb.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		_ = a.conn.Close()
	})
	return a
}

// do runs fn on a fresh channel (a failed operation closes its channel),
// dialling again if a broker restart closed the connection.
func (a *admin) do(fn func(ch *amqp.Channel) error) error {
	a.mu.Lock()
	if a.conn.IsClosed() {
		conn, err := amqp.Dial(a.url)
		if err != nil {
			a.mu.Unlock()
			return err
		}
		a.conn = conn
	}
	conn := a.conn
	a.mu.Unlock()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	return fn(ch)
}

// get takes one message from queue (nil when it is empty).
func (a *admin) get(queue string) *amqp.Delivery {
	a.tb.Helper()
	var out *amqp.Delivery
	err := a.do(func(ch *amqp.Channel) error {
		d, ok, err := ch.Get(queue, true)
		if ok {
			out = &d
		}
		return err
	})
	if err != nil {
		a.tb.Fatalf("basic.get %s: %v", queue, err)
	}
	return out
}

// count returns the number of ready messages in queue.
func (a *admin) count(queue string) int {
	a.tb.Helper()
	var n int
	err := a.do(func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
		n = q.Messages
		return err
	})
	if err != nil {
		a.tb.Fatalf("inspect %s: %v", queue, err)
	}
	return n
}

// publishRaw publishes body to the events exchange without the package.
func (a *admin) publishRaw(key string, body []byte) {
	a.tb.Helper()
	testenv.PublishRaw(a.tb, a.url, broker.Exchange, key, amqp.Publishing{Body: body, DeliveryMode: amqp.Persistent, MessageId: "raw"})
}

// testQueue returns a spec with a unique queue name and routing key,
// whose queues are deleted when the test ends.
func testQueue(tb testing.TB, a *admin, what string) broker.QueueSpec {
	tb.Helper()
	suffix := broker.NewID()[:10]
	spec := broker.QueueSpec{
		Name:        "brokertest." + what + "-" + suffix,
		Bindings:    []string{"test." + what + "." + suffix},
		RetryDelay:  150 * time.Millisecond,
		MaxAttempts: 3,
	}
	tb.Cleanup(func() {
		for _, q := range []string{spec.Name, spec.RetryQueue(), spec.DeadQueue()} {
			_ = a.do(func(ch *amqp.Channel) error {
				_, err := ch.QueueDelete(q, false, false, false)
				return err
			})
		}
	})
	return spec
}

// consume runs broker.Consume in the background until the test ends.
func consume(tb testing.TB, conn *broker.Conn, spec broker.QueueSpec, h broker.Handler) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- broker.Consume(ctx, conn, spec, h) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Consume returned %v after cancel, want nil", err)
			}
		case <-time.After(15 * time.Second):
			tb.Error("Consume did not return after its context was cancelled")
		}
	})
}

func declare(tb testing.TB, conn *broker.Conn, spec broker.QueueSpec) {
	tb.Helper()
	if err := conn.DeclareQueue(testenv.Context(tb, 10*time.Second), spec); err != nil {
		tb.Fatal(err)
	}
}

func newEnv(tb testing.TB, payload any) broker.Envelope {
	tb.Helper()
	env, err := broker.NewEnvelope("test.event", "job-"+broker.NewID()[:6], "req-"+broker.NewID()[:6], payload)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "roundtrip")
	declare(t, conn, spec)
	key := spec.Bindings[0]
	ctx := testenv.Context(t, 30*time.Second)

	// The message as stored: properties and body.
	first := newEnv(t, map[string]any{"video_id": "v1", "size": 42})
	if err := conn.Publish(ctx, key, first); err != nil {
		t.Fatal(err)
	}
	d := a.get(spec.Name)
	if d == nil {
		t.Fatal("confirmed message not in the queue")
	}
	if d.MessageId != first.ID || d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent ||
		d.Type != first.Type || d.CorrelationId != first.CorrelationID || d.Exchange != broker.Exchange || d.RoutingKey != key {
		t.Errorf("properties: id=%q type=%q ct=%q mode=%d corr=%q exchange=%q key=%q",
			d.MessageId, d.Type, d.ContentType, d.DeliveryMode, d.CorrelationId, d.Exchange, d.RoutingKey)
	}
	stored, err := broker.DecodeEnvelope(d.Body)
	if err != nil {
		t.Fatal(err)
	}
	assertEnvelopeEqual(t, stored, first)

	// Through Consume.
	got := make(chan broker.Delivery, 10)
	consume(t, conn, spec, func(_ context.Context, d broker.Delivery) error {
		got <- d
		return nil
	})
	second := newEnv(t, map[string]string{"html": "<b>&amp;</b>"})
	if err := conn.Publish(ctx, key, second); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		assertEnvelopeEqual(t, d.Envelope, second)
		if d.Attempt != 1 || d.RoutingKey != key || d.Redelivered {
			t.Errorf("delivery attempt=%d key=%q redelivered=%v, want 1, %q, false", d.Attempt, d.RoutingKey, d.Redelivered, key)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("consumer did not receive the message")
	}
	// Acked: nothing left, nothing redelivered.
	time.Sleep(300 * time.Millisecond)
	if n := a.count(spec.Name); n != 0 {
		t.Errorf("%d messages left in the queue after ack", n)
	}
	if len(got) != 0 {
		t.Errorf("%d extra deliveries", len(got))
	}
}

func TestPublishUnroutable(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "unroutable")
	declare(t, conn, spec)
	ctx := testenv.Context(t, 30*time.Second)
	nowhere := "test.nobody-bound." + broker.NewID()

	err := conn.Publish(ctx, nowhere, newEnv(t, nil))
	if !errors.Is(err, broker.ErrUnroutable) {
		t.Fatalf("publish to %s: err = %v, want ErrUnroutable", nowhere, err)
	}
	if !strings.Contains(err.Error(), "NO_ROUTE") {
		t.Errorf("error %q does not name the broker's reason", err)
	}

	// Returns are told apart from confirms under concurrency: each of 60
	// concurrent publishes gets its own outcome, on reused channels.
	var wg sync.WaitGroup
	var wrong atomic.Int32
	routed := make(chan string, 60)
	for i := range 60 {
		wg.Go(func() {
			env := newEnv(t, i)
			if i%2 == 0 {
				if err := conn.Publish(ctx, spec.Bindings[0], env); err != nil {
					t.Errorf("routable publish %d: %v", i, err)
					wrong.Add(1)
					return
				}
				routed <- env.ID
				return
			}
			if err := conn.Publish(ctx, nowhere, env); !errors.Is(err, broker.ErrUnroutable) {
				t.Errorf("unroutable publish %d: err = %v, want ErrUnroutable", i, err)
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	close(routed)
	want := map[string]bool{}
	for id := range routed {
		want[id] = true
	}
	for range len(want) {
		d := a.get(spec.Name)
		if d == nil {
			t.Fatalf("queue holds fewer than the %d confirmed messages", len(want))
		}
		if !want[d.MessageId] {
			t.Errorf("unexpected message %s in the queue", d.MessageId)
		}
		delete(want, d.MessageId)
	}
	if a.get(spec.Name) != nil {
		t.Error("more messages in the queue than were confirmed")
	}
}

func TestPublishErrors(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "errors")
	declare(t, conn, spec)
	key := spec.Bindings[0]

	t.Run("ErrContextCancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := conn.Publish(ctx, key, newEnv(t, nil)); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("ErrDeadlinePassed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		time.Sleep(time.Millisecond)
		if err := conn.Publish(ctx, key, newEnv(t, nil)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("ErrConfirmTimeout", func(t *testing.T) {
		// A confirm timeout shorter than any round trip.
		short := dial(t, url, broker.WithConfirmTimeout(time.Microsecond))
		err := short.Publish(context.Background(), key, newEnv(t, nil))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("ErrInvalidEnvelope", func(t *testing.T) {
		err := conn.Publish(context.Background(), key, broker.Envelope{ID: "x"})
		if !errors.Is(err, broker.ErrInvalidEnvelope) {
			t.Errorf("err = %v, want ErrInvalidEnvelope", err)
		}
	})
	// The connection is still good after all that.
	if err := conn.Publish(testenv.Context(t, 10*time.Second), key, newEnv(t, nil)); err != nil {
		t.Fatalf("publish after the failures: %v", err)
	}
	t.Run("ErrClosed", func(t *testing.T) {
		c := dial(t, url)
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(context.Background(), key, newEnv(t, nil)); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("publish after Close: err = %v, want ErrClosed", err)
		}
		if err := c.Ping(context.Background()); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("ping after Close: err = %v, want ErrClosed", err)
		}
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestDialUnreachable needs no broker: nothing listens on port 1.
func TestDialUnreachable(t *testing.T) {
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	const secret = "s3cr3t-pa55"
	conn, err := broker.Dial(testenv.Context(t, 10*time.Second), "amqp://guest:"+secret+"@127.0.0.1:1/", logger,
		broker.WithBackoff(20*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatalf("Dial with the broker down: %v, want a disconnected Conn", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if err := conn.Ping(context.Background()); !errors.Is(err, broker.ErrNotConnected) {
		t.Errorf("Ping: %v, want ErrNotConnected", err)
	}
	if err := conn.Publish(context.Background(), "x", newEnv(t, nil)); !errors.Is(err, broker.ErrNotConnected) {
		t.Errorf("Publish: %v, want ErrNotConnected", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := broker.Consume(ctx, conn, broker.QueueSpec{Name: "x.y", Bindings: []string{"x"}}, func(context.Context, broker.Delivery) error { return nil }); err != nil {
		t.Errorf("Consume while disconnected, then cancelled: %v, want nil", err)
	}
	time.Sleep(200 * time.Millisecond) // a few reconnect attempts
	out := logs.String()
	if !strings.Contains(out, "rabbitmq connect failed") || !strings.Contains(out, "xxxxx@127.0.0.1:1") {
		t.Errorf("logs do not report the failed attempts with the redacted URL:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the password appears in the logs:\n%s", out)
	}

	t.Run("ErrInvalidURL", func(t *testing.T) {
		for _, u := range []string{"http://guest:" + secret + "@host/", "amqp://guest:" + secret + "@host:notaport/", "::"} {
			_, err := broker.Dial(context.Background(), u, logger)
			if err == nil {
				t.Errorf("Dial(%q) succeeded", u)
				continue
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals the password", err)
			}
		}
	})
	t.Run("ErrInvalidQueueSpec", func(t *testing.T) {
		h := func(context.Context, broker.Delivery) error { return nil }
		for _, spec := range []broker.QueueSpec{
			{Bindings: []string{"k"}},
			{Name: "a.b"},
			{Name: "a.b", Bindings: []string{""}},
			{Name: "a.b", Bindings: []string{"k"}, MaxAttempts: -1},
			{Name: strings.Repeat("q", 250), Bindings: []string{"k"}},
		} {
			if err := broker.Consume(context.Background(), conn, spec, h); err == nil {
				t.Errorf("Consume accepted %+v", spec)
			}
		}
		if err := broker.Consume(context.Background(), conn, broker.QueueSpec{Name: "a.b", Bindings: []string{"k"}}, nil); err == nil {
			t.Error("Consume accepted a nil handler")
		}
	})
}

func TestRetryThenSuccess(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "retry")
	spec.MaxAttempts = 5
	declare(t, conn, spec)

	var mu sync.Mutex
	var attempts []int
	var keys []string
	var calledAt []time.Time
	done := make(chan struct{})
	consume(t, conn, spec, func(_ context.Context, d broker.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, d.Attempt)
		keys = append(keys, d.RoutingKey)
		calledAt = append(calledAt, time.Now())
		if len(attempts) < 3 {
			return fmt.Errorf("transient failure %d", len(attempts))
		}
		close(done)
		return nil
	})
	env := newEnv(t, nil)
	if err := conn.Publish(testenv.Context(t, 10*time.Second), spec.Bindings[0], env); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("handler did not succeed on the third attempt")
	}
	time.Sleep(3 * spec.RetryDelay) // would it come back?
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2 3]" {
		t.Errorf("handler saw attempts %v, want [1 2 3]", attempts)
	}
	for _, k := range keys {
		if k != spec.Bindings[0] {
			t.Errorf("routing key %q after retry, want the original %q", k, spec.Bindings[0])
		}
	}
	for i := 1; i < len(calledAt); i++ {
		if gap := calledAt[i].Sub(calledAt[i-1]); gap < spec.RetryDelay {
			t.Errorf("retry %d came after %s, before the retry delay %s", i, gap, spec.RetryDelay)
		}
	}
	if n := a.count(spec.DeadQueue()); n != 0 {
		t.Errorf("%d messages in %s, want none", n, spec.DeadQueue())
	}
	if n := a.count(spec.RetryQueue()); n != 0 {
		t.Errorf("%d messages left in %s", n, spec.RetryQueue())
	}
}

func TestRetryExhaustedGoesToDead(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "exhausted")
	spec.MaxAttempts = 3
	declare(t, conn, spec)
	// A second admin connection, for use inside the handler.
	inspect := newAdmin(t, url)

	var calls atomic.Int32
	var deadTooSoon atomic.Int32
	consume(t, conn, spec, func(_ context.Context, d broker.Delivery) error {
		calls.Add(1)
		if inspect.count(spec.DeadQueue()) != 0 {
			deadTooSoon.Add(1)
		}
		return fmt.Errorf("always failing (attempt %d)", d.Attempt)
	})
	env := newEnv(t, map[string]int{"n": 1})
	if err := conn.Publish(testenv.Context(t, 10*time.Second), spec.Bindings[0], env); err != nil {
		t.Fatal(err)
	}
	var dead *amqp.Delivery
	testenv.Eventually(t, 15*time.Second, func() bool {
		dead = a.get(spec.DeadQueue())
		return dead != nil
	}, "message not in %s after %d attempts (handler called %d times)", spec.DeadQueue(), spec.MaxAttempts, calls.Load())
	if n := calls.Load(); n != int32(spec.MaxAttempts) {
		t.Errorf("handler called %d times before the message was dead, want %d", n, spec.MaxAttempts)
	}
	if n := deadTooSoon.Load(); n != 0 {
		t.Errorf("the message was in %s during %d of the attempts", spec.DeadQueue(), n)
	}
	assertDead(t, dead, env, broker.ReasonMaxAttempts, spec.MaxAttempts, "always failing (attempt 3)")
	time.Sleep(3 * spec.RetryDelay)
	if n := calls.Load(); n != int32(spec.MaxAttempts) {
		t.Errorf("handler called %d times in all, want %d: the message did not stop", n, spec.MaxAttempts)
	}
}

func TestPermanentGoesToDeadAtOnce(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "permanent")
	declare(t, conn, spec)

	var calls atomic.Int32
	consume(t, conn, spec, func(context.Context, broker.Delivery) error {
		calls.Add(1)
		return fmt.Errorf("convert: %w", broker.Permanent(errors.New("not a video")))
	})
	env := newEnv(t, nil)
	if err := conn.Publish(testenv.Context(t, 10*time.Second), spec.Bindings[0], env); err != nil {
		t.Fatal(err)
	}
	var dead *amqp.Delivery
	testenv.Eventually(t, 10*time.Second, func() bool {
		dead = a.get(spec.DeadQueue())
		return dead != nil
	}, "permanently failed message not in %s", spec.DeadQueue())
	assertDead(t, dead, env, broker.ReasonPermanent, 1, "not a video")
	time.Sleep(3 * spec.RetryDelay)
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

func TestUndecodableGoesToDead(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "garbage")
	declare(t, conn, spec)

	var calls atomic.Int32
	consume(t, conn, spec, func(context.Context, broker.Delivery) error {
		calls.Add(1)
		return nil
	})
	garbage := []byte("\x00not json at all{")
	a.publishRaw(spec.Bindings[0], garbage)
	var dead *amqp.Delivery
	testenv.Eventually(t, 10*time.Second, func() bool {
		dead = a.get(spec.DeadQueue())
		return dead != nil
	}, "undecodable message not in %s", spec.DeadQueue())
	if !bytes.Equal(dead.Body, garbage) {
		t.Errorf("dead body %q, want the original %q", dead.Body, garbage)
	}
	if r := dead.Headers[broker.ReasonHeader]; r != broker.ReasonUndecodable {
		t.Errorf("reason %v, want %s", r, broker.ReasonUndecodable)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("handler called %d times for garbage, want 0", n)
	}
}

func TestHandlerPanicIsRetried(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn := dial(t, url)
	a := newAdmin(t, url)
	spec := testQueue(t, a, "panic")
	spec.Concurrency, spec.Prefetch = 2, 4
	declare(t, conn, spec)

	var calls atomic.Int32
	done := make(chan struct{})
	consume(t, conn, spec, func(context.Context, broker.Delivery) error {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		close(done)
		return nil
	})
	if err := conn.Publish(testenv.Context(t, 10*time.Second), spec.Bindings[0], newEnv(t, nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("message not retried after the handler panicked")
	}
}

func assertDead(t *testing.T, d *amqp.Delivery, env broker.Envelope, reason string, attempt int, errPart string) {
	t.Helper()
	got, err := broker.DecodeEnvelope(d.Body)
	if err != nil {
		t.Fatalf("dead message body: %v", err)
	}
	assertEnvelopeEqual(t, got, env)
	if d.MessageId != env.ID || d.DeliveryMode != amqp.Persistent {
		t.Errorf("dead message id %q mode %d, want %q persistent", d.MessageId, d.DeliveryMode, env.ID)
	}
	if r := d.Headers[broker.ReasonHeader]; r != reason {
		t.Errorf("%s = %v, want %s", broker.ReasonHeader, r, reason)
	}
	if n, _ := d.Headers[broker.AttemptHeader].(int32); int(n) != attempt {
		t.Errorf("%s = %v, want %d", broker.AttemptHeader, d.Headers[broker.AttemptHeader], attempt)
	}
	if e, _ := d.Headers[broker.ErrorHeader].(string); !strings.Contains(e, errPart) {
		t.Errorf("%s = %q, want it to contain %q", broker.ErrorHeader, e, errPart)
	}
}
