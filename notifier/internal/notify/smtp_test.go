package notify_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/notifier/internal/notifiertest"
	"github.com/audiomill/audiomill/notifier/internal/notify"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Acceptance: MailDev stopped, an event published, MailDev started again:
// the email arrives once, within the retry window.
func TestSMTPDownThenBackSendsOnce(t *testing.T) {
	t.Parallel()
	md := notifiertest.StartMailDev(t)
	h := notifiertest.NewHarness(t, md, func(c *notify.Config) {
		c.RetryDelay = 300 * time.Millisecond
		c.MaxAttempts = 40 // a 12 s window
	})
	md.Stop()

	to := notifiertest.Recipient("outage")
	job := notifiertest.NewJobID()
	start := time.Now()
	h.Publish(events.TypeAudioReady, job, notifiertest.ReadyPayload(to))
	// At least two attempts fail while the server is down.
	waitLogs(t, h, 2, "handler failed; retrying later", `"job_id":"`+job+`"`, "connection refused")

	md.Start()
	back := time.Now()
	got := md.WaitFor(to, 1, 15*time.Second)
	t.Logf("email arrived %s after publishing, %s after MailDev came back; %d failed attempts before",
		time.Since(start).Round(time.Millisecond), time.Since(back).Round(time.Millisecond), h.CountLogs("handler failed; retrying later", job))
	if got[0].Subject == "" {
		t.Error("empty subject")
	}
	// Nothing more comes: no duplicate from the retries in flight.
	time.Sleep(time.Second)
	if n := len(md.To(to)); n != 1 {
		t.Fatalf("%d emails after the outage, want exactly 1", n)
	}
	if dead := h.Dead(); len(dead) != 0 {
		t.Errorf("%d messages dead-lettered", len(dead))
	}
}

// A server that stays down: bounded retries, then the dead-letter queue
// with a log line, and the consumer goes on.
func TestSMTPDownForGoodEndsInDeadLetter(t *testing.T) {
	t.Parallel()
	md := notifiertest.StartMailDev(t)
	h := notifiertest.NewHarness(t, md, func(c *notify.Config) {
		c.RetryDelay = 100 * time.Millisecond
		c.MaxAttempts = 3
	})
	md.Stop()
	to := notifiertest.Recipient("down")
	job := notifiertest.NewJobID()
	h.Publish(events.TypeAudioReady, job, notifiertest.ReadyPayload(to))
	var seen []amqp.Delivery
	d := h.WaitDead(job, &seen, 15*time.Second)
	if r := d.Headers[broker.ReasonHeader]; r != broker.ReasonMaxAttempts {
		t.Errorf("dead reason %v, want %s", r, broker.ReasonMaxAttempts)
	}
	if a := fmt.Sprint(d.Headers[broker.AttemptHeader]); a != "3" {
		t.Errorf("dead after attempt %s, want 3", a)
	}
	waitLogs(t, h, 1, "handler failed on the last attempt; dead-lettering", `"job_id":"`+job+`"`)

	// The lock was released: once the server is back, a replay sends it.
	md.Start()
	env, err := broker.DecodeEnvelope(d.Body)
	if err != nil {
		t.Fatal(err)
	}
	h.PublishEnvelope(events.TypeAudioReady, env)
	md.WaitFor(to, 1, 15*time.Second)
}

// A 5xx reply is permanent: the message is dead-lettered at once. MailDev
// with an SMTP user but without TLS answers MAIL FROM with "530
// authentication required" to a client that did not authenticate.
func TestSMTPPermanentRejectionDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	md := notifiertest.StartMailDev(t, "--incoming-user", "audiomill", "--incoming-pass", "secret-password")
	h := notifiertest.NewHarness(t, md)
	to := notifiertest.Recipient("rejected")
	job := notifiertest.NewJobID()
	h.Publish(events.TypeAudioFailed, job, notifiertest.FailedPayload(to))
	var seen []amqp.Delivery
	d := h.WaitDead(job, &seen, 15*time.Second)
	if r := d.Headers[broker.ReasonHeader]; r != broker.ReasonPermanent {
		t.Errorf("dead reason %v, want %s (headers %v)", r, broker.ReasonPermanent, d.Headers)
	}
	if a := fmt.Sprint(d.Headers[broker.AttemptHeader]); a != "1" {
		t.Errorf("dead after attempt %s, want 1", a)
	}
	waitLogs(t, h, 1, "mail server refused the email for good", `"job_id":"`+job+`"`, "530")
}

// Implicit TLS (SMTPS) with PLAIN authentication, against MailDev with a
// certificate of a CA the notifier is told to trust (SMTP_CA_FILE).
func TestImplicitTLSWithAuth(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testenv.SelfSignedCert(t, t.TempDir())
	md := notifiertest.StartMailDev(t, "--incoming-secure", "--incoming-cert", certFile, "--incoming-key", keyFile,
		"--incoming-user", "audiomill", "--incoming-pass", "secret-password")
	tlsCfg := func(c *notify.Config) {
		c.SMTP.TLS = mailer.TLSImplicit
		c.SMTP.CAFile = certFile
		c.SMTP.Username, c.SMTP.Password, c.SMTP.Auth = "audiomill", "secret-password", mailer.AuthPlain
	}
	h := notifiertest.NewHarness(t, md, tlsCfg)

	m, err := mailer.New(h.Config.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ping(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatalf("ping over implicit TLS with auth: %v", err)
	}
	to := notifiertest.Recipient("tls")
	h.Publish(events.TypeAudioReady, notifiertest.NewJobID(), notifiertest.ReadyPayload(to))
	md.WaitFor(to, 1, 15*time.Second)

	// A wrong password fails the readiness check; an untrusted certificate too.
	bad := h.Config.SMTP
	bad.Password = "wrong-password"
	if m, err := mailer.New(bad); err != nil {
		t.Fatal(err)
	} else if err := m.Ping(testenv.Context(t, 10*time.Second)); err == nil {
		t.Error("ping with a wrong password succeeded")
	}
	bad = h.Config.SMTP
	bad.CAFile = ""
	if m, err := mailer.New(bad); err != nil {
		t.Fatal(err)
	} else if err := m.Ping(testenv.Context(t, 10*time.Second)); err == nil {
		t.Error("ping trusting an unknown certificate succeeded")
	}
	// STARTTLS required, but this server only speaks implicit TLS: no plain-text fallback.
	plain := notifiertest.StartMailDev(t)
	mand := mailer.Config{Addr: plain.SMTPAddr(), TLS: mailer.TLSMandatory, Timeout: 5 * time.Second}
	if m, err := mailer.New(mand); err != nil {
		t.Fatal(err)
	} else if err := m.Ping(testenv.Context(t, 10*time.Second)); err == nil {
		t.Error("mandatory STARTTLS against a server without it succeeded")
	}
}

// A server that offers no STARTTLS gets nothing when TLS is required
// (SMTP_REQUIRE_TLS=true here; a relay not on loopback needs no flag):
// sending fails with ErrTLSRequired, which says why. The local sink on
// loopback still takes mail without it.
func TestRequiredTLSWithoutSTARTTLSFails(t *testing.T) {
	t.Parallel()
	md := notifiertest.StartMailDev(t)
	ctx := testenv.Context(t, 20*time.Second)
	to := notifiertest.Recipient("require-tls")
	m, err := mailer.New(mailer.Config{Addr: md.SMTPAddr(), RequireTLS: mailer.RequireTLSAlways, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(ctx, mailer.Mail{To: to, Subject: "plain", Text: "t", HTML: "<p>t</p>"})
	if !errors.Is(err, mailer.ErrTLSRequired) || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("send without STARTTLS = %v, want ErrTLSRequired", err)
	}
	if err := m.Ping(ctx); !errors.Is(err, mailer.ErrTLSRequired) {
		t.Fatalf("ping without STARTTLS = %v, want ErrTLSRequired", err)
	}
	local, err := mailer.New(mailer.Config{Addr: md.SMTPAddr(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Send(ctx, mailer.Mail{To: to, Subject: "local", Text: "t", HTML: "<p>t</p>"}); err != nil {
		t.Fatalf("send to the local sink: %v", err)
	}
	if got := md.WaitFor(to, 1, 10*time.Second); len(got) != 1 {
		t.Fatalf("the sink holds %d emails, want the local one only", len(got))
	}
}
