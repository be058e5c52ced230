// Package notifiertest runs what the notifier's tests need around it: a
// Notifier on a queue and routing keys of the test's own against the real
// RabbitMQ and Redis, a private MailDev (and redis-server) the test may stop
// and start again, and the events to send it.
//
// It follows the rule of every service's test harness: the package
// internal/<service>test of the service (see auth's internal/authtest).
package notifiertest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/notifier/internal/notify"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// maildevVersion is the MailDev that scripts/deps.sh installs (scripts/lib.sh).
const maildevVersion = "2.2.1"

// ---- a private MailDev ----

// MailDev is a MailDev process of the test's own, on free ports, which the
// test may stop and start again (the shared one on 1025/1080 belongs to
// every test of the workspace).
type MailDev struct {
	tb       testing.TB
	js       string
	args     []string
	smtpPort int
	webPort  int
	dir      string

	mu  sync.Mutex
	cmd *exec.Cmd
	out testenv.LogBuffer // MailDev's output, every run
}

func maildevJS(tb testing.TB) string {
	tb.Helper()
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			tb.Fatalf("MailDev: no home directory to find its install in: %v", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	js := filepath.Join(cache, "audiomill", "tools", "maildev-"+maildevVersion, "node_modules", "maildev", "bin", "maildev")
	if _, err := os.Stat(js); err != nil {
		tb.Fatalf("MailDev %s is not installed at %s: %v; install it with `make deps`", maildevVersion, js, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		tb.Fatalf("node (to run MailDev) is not on PATH: %v; install it with `make deps`", err)
	}
	return js
}

// StartMailDev starts a private MailDev (extra are more maildev flags) and
// stops it when the test ends.
func StartMailDev(tb testing.TB, extra ...string) *MailDev {
	tb.Helper()
	m := &MailDev{tb: tb, js: maildevJS(tb), args: extra, smtpPort: testenv.FreePort(tb), webPort: testenv.FreePort(tb), dir: tb.TempDir()}
	m.Start()
	tb.Cleanup(func() {
		m.Stop()
		if tb.Failed() {
			tb.Logf("MailDev on %s:\n%s", m.SMTPAddr(), m.out.String())
		}
	})
	return m
}

// SMTPAddr is MailDev's SMTP address (SMTP_ADDR).
func (m *MailDev) SMTPAddr() string { return "127.0.0.1:" + strconv.Itoa(m.smtpPort) }

// WebURL is the base URL of MailDev's REST API.
func (m *MailDev) WebURL() string { return "http://127.0.0.1:" + strconv.Itoa(m.webPort) }

// Start runs MailDev and waits until its REST API and SMTP port answer.
func (m *MailDev) Start() {
	m.tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.tb.Fatal("maildev already running")
	}
	args := append([]string{m.js, "--smtp", strconv.Itoa(m.smtpPort), "--web", strconv.Itoa(m.webPort),
		"--ip", "127.0.0.1", "--web-ip", "127.0.0.1", "--mail-directory", m.dir}, m.args...)
	cmd := exec.Command("node", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &m.out
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		m.tb.Fatalf("start MailDev: %v", err)
	}
	m.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(m.WebURL() + "/email")
		if err == nil {
			resp.Body.Close()
			if m.smtpAnswers() {
				return
			}
		}
		if time.Now().After(deadline) {
			m.tb.Fatalf("MailDev did not answer on %s / %s within 20s; its output:\n%s", m.SMTPAddr(), m.WebURL(), out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smtpAnswers reports whether MailDev's SMTP port takes connections. With
// --incoming-secure the probe completes a TLS handshake: MailDev 2.2.1
// crashes when a connection closes before its handshake.
func (m *MailDev) smtpAnswers() bool {
	secure := slices.Contains(m.args, "--incoming-secure")
	d := &net.Dialer{Timeout: time.Second}
	if secure {
		c, err := tls.DialWithDialer(d, "tcp", m.SMTPAddr(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a probe
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	c, err := d.Dial("tcp", m.SMTPAddr())
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Stop kills MailDev (its whole process group) and waits for it.
func (m *MailDev) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	_ = m.cmd.Wait()
	m.cmd = nil
}

// Email is a message as MailDev's REST API shows it.
type Email struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
	From    []struct {
		Address string `json:"address"`
		Name    string `json:"name"`
	} `json:"from"`
	To []struct {
		Address string `json:"address"`
	} `json:"to"`
	Envelope struct {
		To []struct {
			Address string `json:"address"`
		} `json:"to"`
	} `json:"envelope"`
	Headers map[string]any `json:"headers"`
}

// Emails lists every message MailDev holds.
func (m *MailDev) Emails() []Email {
	m.tb.Helper()
	resp, err := http.Get(m.WebURL() + "/email")
	if err != nil {
		m.tb.Fatalf("MailDev GET /email: %v", err)
	}
	defer resp.Body.Close()
	var out []Email
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		m.tb.Fatalf("MailDev GET /email: %v", err)
	}
	return out
}

// To lists the messages whose recipient is addr.
func (m *MailDev) To(addr string) []Email {
	m.tb.Helper()
	var out []Email
	for _, e := range m.Emails() {
		for _, r := range e.To {
			if strings.EqualFold(r.Address, addr) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// WaitFor waits until addr has received n messages and returns them.
func (m *MailDev) WaitFor(addr string, n int, timeout time.Duration) []Email {
	m.tb.Helper()
	var got []Email
	testenv.Eventually(m.tb, timeout, func() bool {
		got = m.To(addr)
		return len(got) >= n
	}, "%d email(s) to %s, got %d", n, addr, len(got))
	return got
}

// Source returns the raw message as the SMTP server received it.
func (m *MailDev) Source(id string) string {
	m.tb.Helper()
	resp, err := http.Get(m.WebURL() + "/email/" + url.PathEscape(id) + "/source")
	if err != nil {
		m.tb.Fatalf("MailDev GET source: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// ---- the notifier under test ----

// Harness runs a Notifier on a queue of its own, bound to routing keys of
// its own (so the test's events reach no other consumer), against the real
// RabbitMQ and Redis and a private MailDev.
type Harness struct {
	tb testing.TB
	// Config is the Notifier's configuration.
	Config notify.Config
	Mail   *MailDev
	Conn   *broker.Conn
	Redis  *redis.Client
	// AMQPURL is the broker (AMQP_URL).
	AMQPURL string
	// Logs are the Notifier's log lines.
	Logs   *testenv.LogBuffer
	logger *slog.Logger
	keys   map[string]string // event type → routing key
	cancel context.CancelFunc
	done   chan struct{}
}

// Option changes the Notifier's configuration before it starts.
type Option func(*notify.Config)

// NewHarness starts a Notifier with the test defaults, changed by opts,
// sending to md (a MailDev of its own when nil), and stops it when tb ends.
func NewHarness(tb testing.TB, md *MailDev, opts ...Option) *Harness {
	tb.Helper()
	return NewHarnessRedis(tb, md, testenv.RedisAddr(tb), opts...)
}

// NewHarnessRedis is NewHarness with the Redis at redisAddr.
func NewHarnessRedis(tb testing.TB, md *MailDev, redisAddr string, opts ...Option) *Harness {
	tb.Helper()
	amqpURL := testenv.AMQPURL(tb)
	if md == nil {
		md = StartMailDev(tb)
	}
	suffix := broker.NewID()[:10]
	h := &Harness{
		tb: tb, Mail: md, AMQPURL: amqpURL, Logs: &testenv.LogBuffer{},
		keys: map[string]string{
			events.TypeAudioReady:  "notifiertest." + suffix + ".ready",
			events.TypeAudioFailed: "notifiertest." + suffix + ".failed",
		},
	}
	h.Config = notify.Config{
		SMTP:      mailer.Config{Addr: md.SMTPAddr(), From: "audiomill <no-reply@audiomill.test>", Timeout: 5 * time.Second},
		PublicURL: "https://audio.example.com",
		ConsumerConfig: broker.ConsumerConfig{Queue: "notifiertest." + suffix,
			RetryDelay: 200 * time.Millisecond, MaxAttempts: 5, Concurrency: 4},
		Bindings: []string{h.keys[events.TypeAudioReady], h.keys[events.TypeAudioFailed]},
		SentTTL:  time.Hour,
	}
	for _, o := range opts {
		o(&h.Config)
	}
	logger := slog.New(slog.NewJSONHandler(h.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("logs:\n%s", h.Logs.String())
		}
	})

	h.Redis = redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1, DialTimeout: time.Second})
	tb.Cleanup(func() { _ = h.Redis.Close() })

	conn, err := broker.Dial(testenv.Context(tb, 10*time.Second), amqpURL, logger,
		broker.WithBackoff(50*time.Millisecond, time.Second), broker.WithConnectionName(tb.Name()))
	if err != nil {
		tb.Fatal(err)
	}
	h.Conn = conn
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	tb.Cleanup(h.deleteQueues)

	m, err := mailer.New(h.Config.SMTP)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := notify.New(h.Config, m, h.Redis, logger)
	if err != nil {
		tb.Fatal(err)
	}
	// Declared before consuming, so that the first publish is routable.
	if err := conn.DeclareQueue(testenv.Context(tb, 10*time.Second), n.Spec()); err != nil {
		tb.Fatal(err)
	}
	h.logger = logger
	h.cancel, h.done = h.run(n)
	tb.Cleanup(h.stop)
	return h
}

// run runs n until the returned cancel is called; done is closed when it returned.
func (h *Harness) run(n *notify.Notifier) (context.CancelFunc, chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx, h.Conn)
	}()
	return cancel, done
}

// AddReplica runs one more Notifier on the same queue and Redis, as a
// second notifier process would.
func (h *Harness) AddReplica() {
	h.tb.Helper()
	m, err := mailer.New(h.Config.SMTP)
	if err != nil {
		h.tb.Fatal(err)
	}
	n, err := notify.New(h.Config, m, h.Redis, h.logger.With("replica", 2))
	if err != nil {
		h.tb.Fatal(err)
	}
	cancel, done := h.run(n)
	h.tb.Cleanup(func() {
		cancel()
		<-done
	})
}

func (h *Harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		h.tb.Error("notifier did not stop within 15s of its context's end")
	}
}

func (h *Harness) deleteQueues() {
	q := h.Config.Queue
	testenv.DeleteQueues(h.AMQPURL, q, q+broker.RetrySuffix, q+broker.DeadSuffix)
}

// Publish publishes an event of type typ for jobID and returns its envelope.
func (h *Harness) Publish(typ, jobID string, payload any) broker.Envelope {
	h.tb.Helper()
	env, err := broker.NewEnvelope(typ, jobID, "req-"+broker.NewID()[:8], payload)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.PublishEnvelope(typ, env)
	return env
}

// PublishEnvelope publishes env with the routing key of typ (audio.ready's
// for a type of no key).
func (h *Harness) PublishEnvelope(typ string, env broker.Envelope) {
	h.tb.Helper()
	key, ok := h.keys[typ]
	if !ok {
		key = h.keys[events.TypeAudioReady]
	}
	if err := h.Conn.Publish(testenv.Context(h.tb, 10*time.Second), key, env); err != nil {
		h.tb.Fatal(err)
	}
}

// PublishRaw publishes body as is, bypassing the envelope's validation.
func (h *Harness) PublishRaw(body []byte) {
	h.tb.Helper()
	testenv.PublishRaw(h.tb, h.AMQPURL, broker.Exchange, h.keys[events.TypeAudioReady], amqp.Publishing{Body: body,
		DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: "raw-" + broker.NewID()[:8]})
}

// Dead takes every message in the dead-letter queue.
func (h *Harness) Dead() []amqp.Delivery {
	h.tb.Helper()
	var out []amqp.Delivery
	err := testenv.WithAMQPChannel(h.AMQPURL, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(h.Config.Queue+broker.DeadSuffix, true)
			if err != nil || !ok {
				return err
			}
			out = append(out, d)
		}
	})
	if err != nil {
		h.tb.Fatalf("read %s.dead: %v", h.Config.Queue, err)
	}
	return out
}

// WaitDead waits until the dead-letter queue holds a message of jobID and
// returns it (other dead messages are kept in *seen).
func (h *Harness) WaitDead(jobID string, seen *[]amqp.Delivery, timeout time.Duration) amqp.Delivery {
	h.tb.Helper()
	var found *amqp.Delivery
	testenv.Eventually(h.tb, timeout, func() bool {
		*seen = append(*seen, h.Dead()...)
		for i, d := range *seen {
			if strings.Contains(string(d.Body), jobID) {
				found = &(*seen)[i]
				return true
			}
		}
		return false
	}, "job %s in %s.dead", jobID, h.Config.Queue)
	return *found
}

// CountLogs counts the log lines holding every one of parts.
func (h *Harness) CountLogs(parts ...string) int {
	n := 0
	for _, line := range strings.Split(h.Logs.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// Recipient returns a unique address for one test case.
func Recipient(name string) string {
	return fmt.Sprintf("%s-%s@example.com", strings.ToLower(name), broker.NewID()[:8])
}

// NewJobID returns a unique job id.
func NewJobID() string { return "job-" + broker.NewID()[:16] }

// ReadyPayload is a valid audio.ready for the owner at to.
func ReadyPayload(to string) events.AudioReady {
	return events.AudioReady{
		VideoID: "vid-" + broker.NewID()[:8], AudioID: "aud-" + broker.NewID()[:12], OwnerID: "user-1", OwnerEmail: to,
		FileName: "holiday.mp4", Size: 3565158, DurationSeconds: 205.4, BitrateKbps: 128,
	}
}

// FailedPayload is a valid audio.failed for the owner at to.
func FailedPayload(to string) events.AudioFailed {
	return events.AudioFailed{
		VideoID: "vid-" + broker.NewID()[:8], OwnerID: "user-1", OwnerEmail: to,
		FileName: "broken.avi", Reason: "the file has no audio stream", Retryable: false,
	}
}

// RedisServer is a redis-server process of the test's own, which it may
// stop and start again (the shared Redis belongs to every test).
type RedisServer struct {
	tb   testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server and stops it when tb ends.
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redis-server is not on PATH: %v; install it with `make deps`", err)
	}
	r := &RedisServer{tb: tb, port: testenv.FreePort(tb), dir: tb.TempDir()}
	r.Start()
	tb.Cleanup(r.Stop)
	return r
}

// Addr is its address (REDIS_ADDR).
func (r *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Start runs redis-server and waits until it answers.
func (r *RedisServer) Start() {
	r.tb.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	testenv.Eventually(r.tb, 10*time.Second, func() bool {
		c := redis.NewClient(&redis.Options{Addr: r.Addr()})
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
	}, "private redis-server on %s did not answer", r.Addr())
}

// Stop kills redis-server and waits for it.
func (r *RedisServer) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}
