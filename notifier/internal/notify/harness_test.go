package notify_test

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

// maildev is a MailDev process of the test's own, on free ports, which the
// test may stop and start again (the shared one on 1025/1080 belongs to
// every test of the workspace).
type maildev struct {
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

// startMailDev starts a private MailDev (extra are more maildev flags) and
// stops it when the test ends.
func startMailDev(tb testing.TB, extra ...string) *maildev {
	tb.Helper()
	m := &maildev{tb: tb, js: maildevJS(tb), args: extra, smtpPort: testenv.FreePort(tb), webPort: testenv.FreePort(tb), dir: tb.TempDir()}
	m.start()
	tb.Cleanup(func() {
		m.stop()
		if tb.Failed() {
			tb.Logf("MailDev on %s:\n%s", m.smtpAddr(), m.out.String())
		}
	})
	return m
}

func (m *maildev) smtpAddr() string { return "127.0.0.1:" + strconv.Itoa(m.smtpPort) }
func (m *maildev) webURL() string   { return "http://127.0.0.1:" + strconv.Itoa(m.webPort) }

// start runs MailDev and waits until its REST API and SMTP port answer.
func (m *maildev) start() {
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
		resp, err := http.Get(m.webURL() + "/email")
		if err == nil {
			resp.Body.Close()
			if m.smtpAnswers() {
				return
			}
		}
		if time.Now().After(deadline) {
			m.tb.Fatalf("MailDev did not answer on %s / %s within 20s; its output:\n%s", m.smtpAddr(), m.webURL(), out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smtpAnswers reports whether MailDev's SMTP port takes connections. With
// --incoming-secure the probe completes a TLS handshake: MailDev 2.2.1
// crashes when a connection closes before its handshake.
func (m *maildev) smtpAnswers() bool {
	secure := slices.Contains(m.args, "--incoming-secure")
	d := &net.Dialer{Timeout: time.Second}
	if secure {
		c, err := tls.DialWithDialer(d, "tcp", m.smtpAddr(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a probe
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	c, err := d.Dial("tcp", m.smtpAddr())
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// stop kills MailDev (its whole process group) and waits for it.
func (m *maildev) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	_ = m.cmd.Wait()
	m.cmd = nil
}

// email is a message as MailDev's REST API shows it.
type email struct {
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

// emails lists every message MailDev holds.
func (m *maildev) emails() []email {
	m.tb.Helper()
	resp, err := http.Get(m.webURL() + "/email")
	if err != nil {
		m.tb.Fatalf("MailDev GET /email: %v", err)
	}
	defer resp.Body.Close()
	var out []email
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		m.tb.Fatalf("MailDev GET /email: %v", err)
	}
	return out
}

// to lists the messages whose recipient is addr.
func (m *maildev) to(addr string) []email {
	m.tb.Helper()
	var out []email
	for _, e := range m.emails() {
		for _, r := range e.To {
			if strings.EqualFold(r.Address, addr) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// waitFor waits until addr has received n messages and returns them.
func (m *maildev) waitFor(addr string, n int, timeout time.Duration) []email {
	m.tb.Helper()
	var got []email
	testenv.Eventually(m.tb, timeout, func() bool {
		got = m.to(addr)
		return len(got) >= n
	}, "%d email(s) to %s, got %d", n, addr, len(got))
	return got
}

// source returns the raw message as the SMTP server received it.
func (m *maildev) source(id string) string {
	m.tb.Helper()
	resp, err := http.Get(m.webURL() + "/email/" + url.PathEscape(id) + "/source")
	if err != nil {
		m.tb.Fatalf("MailDev GET source: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// ---- the notifier under test ----

// harness runs a Notifier on a queue of its own, bound to routing keys of
// its own (so the test's events reach no other consumer), against the real
// RabbitMQ and Redis and a private MailDev.
type harness struct {
	tb      testing.TB
	cfg     notify.Config
	mail    *maildev
	conn    *broker.Conn
	redis   *redis.Client
	amqpURL string
	logs    *testenv.LogBuffer
	logger  *slog.Logger
	keys    map[string]string // event type → routing key
	cancel  context.CancelFunc
	done    chan struct{}
}

type option func(*notify.Config)

func newHarness(tb testing.TB, md *maildev, opts ...option) *harness {
	tb.Helper()
	return newHarnessRedis(tb, md, testenv.RedisAddr(tb), opts...)
}

// newHarnessRedis is newHarness with the Redis at redisAddr.
func newHarnessRedis(tb testing.TB, md *maildev, redisAddr string, opts ...option) *harness {
	tb.Helper()
	amqpURL := testenv.AMQPURL(tb)
	if md == nil {
		md = startMailDev(tb)
	}
	suffix := broker.NewID()[:10]
	h := &harness{
		tb: tb, mail: md, amqpURL: amqpURL, logs: &testenv.LogBuffer{},
		keys: map[string]string{
			events.TypeAudioReady:  "notifiertest." + suffix + ".ready",
			events.TypeAudioFailed: "notifiertest." + suffix + ".failed",
		},
	}
	h.cfg = notify.Config{
		SMTP:      mailer.Config{Addr: md.smtpAddr(), From: "audiomill <no-reply@audiomill.test>", Timeout: 5 * time.Second},
		PublicURL: "https://audio.example.com",
		ConsumerConfig: broker.ConsumerConfig{Queue: "notifiertest." + suffix,
			RetryDelay: 200 * time.Millisecond, MaxAttempts: 5, Concurrency: 4},
		Bindings: []string{h.keys[events.TypeAudioReady], h.keys[events.TypeAudioFailed]},
		SentTTL:  time.Hour,
	}
	for _, o := range opts {
		o(&h.cfg)
	}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("logs:\n%s", h.logs.String())
		}
	})

	h.redis = redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1, DialTimeout: time.Second})
	tb.Cleanup(func() { _ = h.redis.Close() })

	conn, err := broker.Dial(testenv.Context(tb, 10*time.Second), amqpURL, logger,
		broker.WithBackoff(50*time.Millisecond, time.Second), broker.WithConnectionName(tb.Name()))
	if err != nil {
		tb.Fatal(err)
	}
	h.conn = conn
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	tb.Cleanup(h.deleteQueues)

	m, err := mailer.New(h.cfg.SMTP)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := notify.New(h.cfg, m, h.redis, logger)
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
func (h *harness) run(n *notify.Notifier) (context.CancelFunc, chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx, h.conn)
	}()
	return cancel, done
}

// addReplica runs one more Notifier on the same queue and Redis, as a
// second notifier process would.
func (h *harness) addReplica() {
	h.tb.Helper()
	m, err := mailer.New(h.cfg.SMTP)
	if err != nil {
		h.tb.Fatal(err)
	}
	n, err := notify.New(h.cfg, m, h.redis, h.logger.With("replica", 2))
	if err != nil {
		h.tb.Fatal(err)
	}
	cancel, done := h.run(n)
	h.tb.Cleanup(func() {
		cancel()
		<-done
	})
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		h.tb.Error("notifier did not stop within 15s of its context's end")
	}
}

func (h *harness) deleteQueues() {
	for _, q := range []string{h.cfg.Queue, h.cfg.Queue + broker.RetrySuffix, h.cfg.Queue + broker.DeadSuffix} {
		_ = testenv.WithAMQPChannel(h.amqpURL, func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(q, false, false, false)
			return err
		})
	}
}

// publish publishes an event of type typ for jobID and returns its envelope.
func (h *harness) publish(typ, jobID string, payload any) broker.Envelope {
	h.tb.Helper()
	env, err := broker.NewEnvelope(typ, jobID, "req-"+broker.NewID()[:8], payload)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.publishEnvelope(typ, env)
	return env
}

func (h *harness) publishEnvelope(typ string, env broker.Envelope) {
	h.tb.Helper()
	key, ok := h.keys[typ]
	if !ok {
		key = h.keys[events.TypeAudioReady]
	}
	if err := h.conn.Publish(testenv.Context(h.tb, 10*time.Second), key, env); err != nil {
		h.tb.Fatal(err)
	}
}

// publishRaw publishes body as is, bypassing the envelope's validation.
func (h *harness) publishRaw(body []byte) {
	h.tb.Helper()
	testenv.PublishRaw(h.tb, h.amqpURL, broker.Exchange, h.keys[events.TypeAudioReady], amqp.Publishing{Body: body,
		DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: "raw-" + broker.NewID()[:8]})
}

// dead takes every message in the dead-letter queue.
func (h *harness) dead() []amqp.Delivery {
	h.tb.Helper()
	var out []amqp.Delivery
	err := testenv.WithAMQPChannel(h.amqpURL, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(h.cfg.Queue+broker.DeadSuffix, true)
			if err != nil || !ok {
				return err
			}
			out = append(out, d)
		}
	})
	if err != nil {
		h.tb.Fatalf("read %s.dead: %v", h.cfg.Queue, err)
	}
	return out
}

// waitDead waits until the dead-letter queue holds a message of jobID and
// returns it (other dead messages are kept in *seen).
func (h *harness) waitDead(jobID string, seen *[]amqp.Delivery, timeout time.Duration) amqp.Delivery {
	h.tb.Helper()
	var found *amqp.Delivery
	testenv.Eventually(h.tb, timeout, func() bool {
		*seen = append(*seen, h.dead()...)
		for i, d := range *seen {
			if strings.Contains(string(d.Body), jobID) {
				found = &(*seen)[i]
				return true
			}
		}
		return false
	}, "job %s in %s.dead", jobID, h.cfg.Queue)
	return *found
}

// countLogs counts the log lines holding every one of parts.
func (h *harness) countLogs(parts ...string) int {
	n := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
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

// recipient returns a unique address for one test case.
func recipient(name string) string {
	return fmt.Sprintf("%s-%s@example.com", strings.ToLower(name), broker.NewID()[:8])
}

func newJobID() string { return "job-" + broker.NewID()[:16] }

func readyPayload(to string) events.AudioReady {
	return events.AudioReady{
		VideoID: "vid-" + broker.NewID()[:8], AudioID: "aud-" + broker.NewID()[:12], OwnerID: "user-1", OwnerEmail: to,
		FileName: "holiday.mp4", Size: 3565158, DurationSeconds: 205.4, BitrateKbps: 128,
	}
}

func failedPayload(to string) events.AudioFailed {
	return events.AudioFailed{
		VideoID: "vid-" + broker.NewID()[:8], OwnerID: "user-1", OwnerEmail: to,
		FileName: "broken.avi", Reason: "the file has no audio stream", Retryable: false,
	}
}

// redisServer is a redis-server process of the test's own, which it may
// stop and start again (the shared Redis belongs to every test).
type redisServer struct {
	tb   testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redis-server is not on PATH: %v; install it with `make deps`", err)
	}
	r := &redisServer{tb: tb, port: testenv.FreePort(tb), dir: tb.TempDir()}
	r.start()
	tb.Cleanup(r.stop)
	return r
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) start() {
	r.tb.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	testenv.Eventually(r.tb, 10*time.Second, func() bool {
		c := redis.NewClient(&redis.Options{Addr: r.addr()})
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
	}, "private redis-server on %s did not answer", r.addr())
}

func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}
