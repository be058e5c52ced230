package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/notifier/internal/app"
	"github.com/audiomill/audiomill/notifier/internal/notifiertest"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// The service as main runs it: Wire on a real service.Main, its /readyz
// with the smtp check, and an event through its queue to MailDev. The
// event goes through the default exchange straight to the test's queue, so
// no other consumer of audio.ready sees it.
func TestWireEndToEnd(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.AMQPURL(t)
	md := notifiertest.StartMailDev(t)
	queue := "notifiertest.wire-" + broker.NewID()[:10]
	env := map[string]string{
		"PORT": "0", "CONSUL_HTTP_ADDR": testenv.ConsulAddr(t), "CONSUL_HTTP_TOKEN": testenv.ConsulToken(t),
		"SERVICE_ID": queue,
		"AMQP_URL":   amqpURL, "REDIS_ADDR": testenv.RedisAddr(t),
		"SMTP_ADDR": md.SMTPAddr(), "MAIL_FROM": "no-reply@audiomill.test", "PUBLIC_URL": "http://edge.test:8080",
		"NOTIFIER_QUEUE": queue, "NOTIFIER_RETRY_DELAY": "200ms",
	}
	logs := &testenv.LogBuffer{}
	m := service.NewMain(app.Spec("test"), func(k string) string { return env[k] }, logs)
	if err := m.Open(testenv.Context(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = m.Close()
		}
		testenv.DeleteQueues(amqpURL, queue, queue+broker.RetrySuffix, queue+broker.DeadSuffix)
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})

	var ready httpReady
	testenv.Eventually(t, 10*time.Second, func() bool {
		ready = getReady(t, "http://"+m.Addr()+"/readyz")
		return ready.status == http.StatusOK
	}, "/readyz not ready: %+v", ready)
	for _, check := range []string{"smtp", "rabbitmq", "redis"} {
		if _, ok := ready.body[check]; !ok {
			t.Errorf("/readyz lacks %s: %s", check, ready.raw)
		}
	}

	to := notifiertest.Recipient("wire")
	job := notifiertest.NewJobID()
	e, err := broker.NewEnvelope(events.TypeAudioReady, job, "req-wire", notifiertest.ReadyPayload(to))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := e.Encode()
	testenv.Eventually(t, 10*time.Second, func() bool { return queueExists(amqpURL, queue) }, "queue %s declared", queue)
	// Through the default exchange, straight to the queue.
	testenv.PublishRaw(t, amqpURL, "", queue,
		amqp.Publishing{Body: body, DeliveryMode: amqp.Persistent, ContentType: "application/json"})
	got := md.WaitFor(to, 1, 15*time.Second)
	if want := "http://edge.test:8080/api/v1/jobs/" + job + "/audio"; !bytes.Contains([]byte(got[0].Text), []byte(want)) {
		t.Errorf("email lacks %s:\n%s", want, got[0].Text)
	}

	testenv.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(getBody(t, "http://"+m.Addr()+"/metrics"), `notifier_emails_total{outcome="ready",result="sent"} 1`)
	}, "/metrics does not count the sent email")

	// SMTP down: /readyz says so.
	md.Stop()
	testenv.Eventually(t, 10*time.Second, func() bool {
		return getReady(t, "http://"+m.Addr()+"/readyz").status == http.StatusServiceUnavailable
	}, "/readyz still ready with the SMTP server down")
	md.Start()

	closed = true
	if err := m.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type httpReady struct {
	status int
	raw    string
	body   map[string]any
}

func getReady(t *testing.T, url string) httpReady {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return httpReady{raw: err.Error()}
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	r := httpReady{status: resp.StatusCode, raw: buf.String()}
	var parsed struct {
		Checks map[string]any `json:"checks"`
	}
	if json.Unmarshal(buf.Bytes(), &parsed) == nil && parsed.Checks != nil {
		r.body = parsed.Checks
	} else {
		_ = json.Unmarshal(buf.Bytes(), &r.body)
	}
	return r
}

func queueExists(amqpURL, queue string) bool {
	return testenv.WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
		return err
	}) == nil
}
