package broker_test

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/testenv"
)

// rabbitmqctl runs rabbitmqctl with args, failing tb when it cannot.
func rabbitmqctl(tb testing.TB, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
}

// TestBrokerRestart is the acceptance test of the foundation issue: RabbitMQ
// restarts (stop_app, start_app) while a publisher publishes with confirms
// and a consumer consumes. Without a new Conn, both recover, and every
// publish that returned nil is in the queue afterwards.
func TestBrokerRestart(t *testing.T) {
	url := testenv.RabbitMQExclusive(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatalf("rabbitmqctl is not on PATH (needed to restart RabbitMQ): %v", err)
	}
	conn := dial(t, url, broker.WithBackoff(100*time.Millisecond, time.Second), broker.WithConfirmTimeout(5*time.Second))
	a := newAdmin(t, url)
	published := testQueue(t, a, "restart-published")
	consumed := testQueue(t, a, "restart-consumed")
	declare(t, conn, published)
	declare(t, conn, consumed)

	var mu sync.Mutex
	received := map[string]bool{}
	consume(t, conn, consumed, func(_ context.Context, d broker.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		received[d.ID] = true
		return nil
	})
	// Registered after the helpers above, so it runs before their
	// clean-ups: never leave RabbitMQ stopped.
	t.Cleanup(func() { rabbitmqctl(t, "start_app") })

	// The consumer works before the restart.
	before := newEnv(t, nil)
	if err := conn.Publish(testenv.Context(t, 10*time.Second), consumed.Bindings[0], before); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received[before.ID]
	}, "consumer did not receive a message before the restart")

	// The publisher: up to 2000 publishes or 60 s, until told to stop.
	type result struct {
		id  string
		err error
		at  time.Time
	}
	stop := make(chan struct{})
	results := make(chan result, 2000)
	go func() {
		defer close(results)
		deadline := time.Now().Add(60 * time.Second)
		for range cap(results) {
			select {
			case <-stop:
				return
			default:
			}
			if time.Now().After(deadline) {
				return
			}
			env := newEnv(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := conn.Publish(ctx, published.Bindings[0], env)
			cancel()
			results <- result{env.ID, err, time.Now()}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var all []result
	collect := func(until func() bool, within time.Duration, msg string) {
		t.Helper()
		timeout := time.After(within)
		for !until() {
			select {
			case r, ok := <-results:
				if !ok {
					t.Fatalf("publisher stopped early: %s", msg)
				}
				all = append(all, r)
			case <-timeout:
				t.Fatalf("after %s: %s", within, msg)
			}
		}
	}
	okSince := func(since time.Time) int {
		n := 0
		for _, r := range all {
			if r.err == nil && r.at.After(since) {
				n++
			}
		}
		return n
	}

	collect(func() bool { return okSince(time.Time{}) >= 50 }, 30*time.Second, "50 publishes did not succeed before the restart")
	t.Log("stopping RabbitMQ (rabbitmqctl stop_app)")
	stopping := time.Now()
	rabbitmqctl(t, "stop_app")
	stopTook := time.Since(stopping)
	testenv.Eventually(t, 10*time.Second, func() bool { return conn.Ping(context.Background()) != nil },
		"Ping still succeeds with RabbitMQ stopped")
	time.Sleep(500 * time.Millisecond)
	t.Log("starting RabbitMQ (rabbitmqctl start_app)")
	starting := time.Now()
	rabbitmqctl(t, "start_app")
	started := time.Now()
	testenv.Eventually(t, 30*time.Second, func() bool { return conn.Ping(context.Background()) == nil },
		"the Conn did not reconnect after RabbitMQ came back")
	reconnected := time.Now()
	collect(func() bool { return okSince(reconnected) >= 50 }, 30*time.Second, "publishing did not recover after the restart")
	close(stop)
	for r := range results {
		all = append(all, r)
	}

	// The consumer resumed.
	after := newEnv(t, nil)
	if err := conn.Publish(testenv.Context(t, 10*time.Second), consumed.Bindings[0], after); err != nil {
		t.Fatalf("publish to the consumer after the restart: %v", err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received[after.ID]
	}, "consumer did not resume after the restart")

	// Every confirmed publish is in the queue.
	confirmed := map[string]bool{}
	failed := 0
	kinds := map[string]int{}
	for _, r := range all {
		if r.err == nil {
			confirmed[r.id] = true
			continue
		}
		failed++
		switch {
		case errors.Is(r.err, broker.ErrNotConnected):
			kinds["not connected"]++
		case errors.Is(r.err, broker.ErrConfirmLost):
			kinds["confirm lost"]++
		case errors.Is(r.err, context.DeadlineExceeded):
			kinds["timeout"]++
		default:
			kinds[r.err.Error()]++
		}
	}
	inQueue := map[string]bool{}
	for {
		d := a.get(published.Name)
		if d == nil {
			break
		}
		inQueue[d.MessageId] = true
	}
	missing := 0
	for id := range confirmed {
		if !inQueue[id] {
			missing++
		}
	}
	extra := len(inQueue) - (len(confirmed) - missing)
	t.Logf("publishes: %d attempted, %d confirmed, %d failed %v; queue holds %d: all confirmed but %d, plus %d whose publish failed",
		len(all), len(confirmed), failed, kinds, len(inQueue), missing, extra)
	t.Logf("timeline: stop_app took %s, start_app took %s, reconnected %s after start_app returned",
		stopTook.Round(time.Millisecond), started.Sub(starting).Round(time.Millisecond), reconnected.Sub(started).Round(time.Millisecond))
	if missing > 0 {
		t.Errorf("%d confirmed publishes are not in the queue", missing)
	}
	if failed == 0 {
		t.Error("no publish failed during the outage: was RabbitMQ really stopped?")
	}
}
