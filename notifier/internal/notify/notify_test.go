package notify_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/notifier/internal/notifiertest"
	"github.com/audiomill/audiomill/notifier/internal/notify"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
)

func TestReadyAndFailedEmails(t *testing.T) {
	t.Parallel()
	h := notifiertest.NewHarness(t, nil)

	// audio.ready, English.
	to := notifiertest.Recipient("ready")
	job := notifiertest.NewJobID()
	p := notifiertest.ReadyPayload(to)
	start := time.Now()
	h.Publish(events.TypeAudioReady, job, p)
	got := h.Mail.WaitFor(to, 1, 15*time.Second)
	t.Logf("audio.ready: publish to email in MailDev: %s", time.Since(start).Round(time.Millisecond))
	e := got[0]
	if len(e.To) != 1 || e.To[0].Address != to {
		t.Errorf("recipients %+v, want only %s", e.To, to)
	}
	if len(e.From) != 1 || e.From[0].Address != "no-reply@audiomill.test" {
		t.Errorf("from %+v", e.From)
	}
	if e.Subject != `Your MP3 of "holiday.mp4" is ready` {
		t.Errorf("subject %q", e.Subject)
	}
	link := "https://audio.example.com/api/v1/jobs/" + job + "/audio"
	seed := "https://audio.example.com/download?fid=" + p.AudioID
	for _, want := range []string{link, seed, p.AudioID, "3.4 MiB", "3:25", "128 kbit/s"} {
		if !strings.Contains(e.Text, want) {
			t.Errorf("text part lacks %q:\n%s", want, e.Text)
		}
	}
	for _, want := range []string{`href="` + link + `"`, p.AudioID, "3.4 MiB", "3:25"} {
		if !strings.Contains(e.HTML, want) {
			t.Errorf("HTML part lacks %q:\n%s", want, e.HTML)
		}
	}
	src := h.Mail.Source(e.ID)
	for _, want := range []string{"multipart/alternative", "text/plain", "text/html",
		"Message-ID: <audiomill." + job + ".ready@audiomill.test>", "Auto-Submitted: auto-generated", "Content-Language: en"} {
		if !strings.Contains(src, want) {
			t.Errorf("message source lacks %q:\n%s", want, src)
		}
	}

	// audio.failed, Chinese.
	to = notifiertest.Recipient("failed")
	job = notifiertest.NewJobID()
	f := notifiertest.FailedPayload(to)
	f.Locale = "zh-CN"
	f.FileName = "假期视频.avi"
	start = time.Now()
	h.Publish(events.TypeAudioFailed, job, f)
	got = h.Mail.WaitFor(to, 1, 15*time.Second)
	t.Logf("audio.failed: publish to email in MailDev: %s", time.Since(start).Round(time.Millisecond))
	e = got[0]
	if e.Subject != "您的视频“假期视频.avi”未能转换为 MP3" {
		t.Errorf("subject %q", e.Subject)
	}
	for _, want := range []string{"原因：the file has no audio stream", "音轨", job} {
		if !strings.Contains(e.Text, want) || !strings.Contains(e.HTML, strings.TrimPrefix(want, "原因：")) {
			t.Errorf("text or HTML lacks %q:\n%s\n%s", want, e.Text, e.HTML)
		}
	}
	if src := h.Mail.Source(e.ID); !strings.Contains(src, "Message-ID: <audiomill."+job+".failed@audiomill.test>") {
		t.Errorf("message source:\n%s", src)
	}
}

// A job's ready and failed emails are separate outcomes; the same event
// delivered twice, or published twice under new message ids, sends one.
func TestSameEventTwiceSendsOneEmail(t *testing.T) {
	t.Parallel()
	h := notifiertest.NewHarness(t, nil)
	to := notifiertest.Recipient("twice")
	job := notifiertest.NewJobID()
	env := h.Publish(events.TypeAudioReady, job, notifiertest.ReadyPayload(to))
	h.PublishEnvelope(events.TypeAudioReady, env) // the very same message again
	again, err := broker.NewEnvelope(events.TypeAudioReady, job, "req-2", notifiertest.ReadyPayload(to))
	if err != nil {
		t.Fatal(err)
	}
	h.PublishEnvelope(events.TypeAudioReady, again) // a new message for the same job and outcome

	h.Mail.WaitFor(to, 1, 15*time.Second)
	waitLogs(t, h, 2, "email already sent", job)
	time.Sleep(300 * time.Millisecond)
	if n := len(h.Mail.To(to)); n != 1 {
		t.Fatalf("%d emails for one job and outcome, want 1", n)
	}

	// The other outcome of the same job is another email.
	h.Publish(events.TypeAudioFailed, job, notifiertest.FailedPayload(to))
	h.Mail.WaitFor(to, 2, 15*time.Second)
}

func waitLogs(t *testing.T, h *notifiertest.Harness, n int, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for h.CountLogs(parts...) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after 15s: fewer than %d log lines with %q", n, parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Each bad input goes to the dead-letter queue at once, with a log line
// naming its job, sends nothing, and the consumer carries on.
func TestBadInputIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := notifiertest.NewHarness(t, nil)
	to := notifiertest.Recipient("bad")
	ready := func(edit func(*events.AudioReady)) json.RawMessage {
		p := notifiertest.ReadyPayload(to)
		edit(&p)
		b, _ := json.Marshal(p)
		return b
	}
	cases := []struct {
		name    string
		typ     string
		payload json.RawMessage
		reason  string // the log line's reason
	}{
		{"WrongJSONType", events.TypeAudioReady, json.RawMessage(`{"video_id":"v","audio_id":"a","owner_id":"o","owner_email":"` + to + `","file_name":"f","size":"big"}`), "field size"},
		{"PayloadNotObject", events.TypeAudioReady, json.RawMessage(`[1,2,3]`), "invalid event payload"},
		{"NoPayload", events.TypeAudioFailed, nil, "no payload"},
		{"MissingFields", events.TypeAudioReady, json.RawMessage(`{"owner_email":"` + to + `"}`), "audio_id is required"},
		{"MissingReason", events.TypeAudioFailed, json.RawMessage(`{"video_id":"v","owner_id":"o","owner_email":"` + to + `","file_name":"f"}`), "reason is required"},
		{"NotAnEmail", events.TypeAudioReady, ready(func(p *events.AudioReady) { p.OwnerEmail = "not-an-email" }), "owner_email is not an email address"},
		{"EmailWithName", events.TypeAudioReady, ready(func(p *events.AudioReady) { p.OwnerEmail = "Eve <" + to + ">" }), "owner_email"},
		{"EmailHeaderInjection", events.TypeAudioReady, ready(func(p *events.AudioReady) { p.OwnerEmail = to + "\r\nBcc: eve@example.com" }), "owner_email contains control characters"},
		{"UnknownType", "video.uploaded", ready(func(*events.AudioReady) {}), "handles audio.ready, audio.failed, account.verify and account.exists only"},
	}
	var seen []amqp.Delivery
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := notifiertest.NewJobID()
			env := broker.Envelope{ID: broker.NewID(), Type: c.typ, OccurredAt: time.Now().UTC(), JobID: job, CorrelationID: "req-bad", Payload: c.payload}
			h.PublishEnvelope(c.typ, env)
			d := h.WaitDead(job, &seen, 10*time.Second)
			if r := d.Headers[broker.ReasonHeader]; r != broker.ReasonPermanent {
				t.Errorf("dead reason %v, want %s", r, broker.ReasonPermanent)
			}
			if a := d.Headers[broker.AttemptHeader]; fmt.Sprint(a) != "1" {
				t.Errorf("dead after attempt %v, want 1 (no retries)", a)
			}
			waitLogs(t, h, 1, "invalid event; dead-lettering it", `"job_id":"`+job+`"`, c.reason)
		})
	}
	t.Run("MissingJobID", func(t *testing.T) {
		marker := "nojob-" + broker.NewID()[:8]
		p := notifiertest.ReadyPayload(to)
		p.VideoID = marker
		env, err := broker.NewEnvelope(events.TypeAudioReady, "", "req-bad", p)
		if err != nil {
			t.Fatal(err)
		}
		h.PublishEnvelope(events.TypeAudioReady, env)
		h.WaitDead(marker, &seen, 10*time.Second)
		waitLogs(t, h, 1, "invalid event; dead-lettering it", "job_id is required", env.ID)
	})
	t.Run("InvalidJSON", func(t *testing.T) {
		marker := "broken-" + broker.NewID()[:8]
		h.PublishRaw([]byte(`{"id":"` + marker + `","type":"audio.ready","payload":{`))
		d := h.WaitDead(marker, &seen, 10*time.Second)
		if r := d.Headers[broker.ReasonHeader]; r != broker.ReasonUndecodable {
			t.Errorf("dead reason %v, want %s", r, broker.ReasonUndecodable)
		}
	})

	// The consumer is alive and well: a good event after all the bad ones is mailed.
	good := notifiertest.Recipient("good")
	h.Publish(events.TypeAudioReady, notifiertest.NewJobID(), notifiertest.ReadyPayload(good))
	h.Mail.WaitFor(good, 1, 15*time.Second)
	if n := len(h.Mail.To(to)); n != 0 {
		t.Errorf("%d emails sent for bad input", n)
	}
}

// CR/LF in any user string never reaches a header: the subject stays one
// line, no header is added, no recipient is added.
func TestHeaderInjection(t *testing.T) {
	t.Parallel()
	h := notifiertest.NewHarness(t, nil)
	inject := "\r\nBcc: eve@example.com\r\nX-Injected: yes\r\n\r\nbody"
	to := notifiertest.Recipient("inject")

	p := notifiertest.ReadyPayload(to)
	p.FileName = "evil.mp4" + inject
	p.Locale = "en" + inject
	p.AudioID = "aud-" + broker.NewID()[:8]
	h.Publish(events.TypeAudioReady, notifiertest.NewJobID(), p)
	f := notifiertest.FailedPayload(to)
	f.FileName = "evil\n\u2028name.avi" + inject
	f.Reason = "bad" + inject
	f.Locale = "zh\nX-Injected: yes"
	h.Publish(events.TypeAudioFailed, notifiertest.NewJobID(), f)

	got := h.Mail.WaitFor(to, 2, 15*time.Second)
	subjects := map[string]bool{}
	for _, e := range got {
		subjects[e.Subject] = true
		src := h.Mail.Source(e.ID)
		head, _, _ := strings.Cut(src, "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n") {
			l := strings.ToLower(line)
			if strings.HasPrefix(l, "bcc:") || strings.HasPrefix(l, "x-injected:") {
				t.Errorf("injected header %q in:\n%s", line, head)
			}
		}
		if strings.ContainsAny(e.Subject, "\r\n\u2028") {
			t.Errorf("subject %q spans lines", e.Subject)
		}
		if len(e.To) != 1 || len(e.Envelope.To) > 1 {
			t.Errorf("recipients %+v envelope %+v, want only %s", e.To, e.Envelope.To, to)
		}
		if _, ok := e.Headers["x-injected"]; ok {
			t.Errorf("MailDev sees an X-Injected header: %v", e.Headers)
		}
	}
	for _, want := range []string{
		`Your MP3 of "evil.mp4 Bcc: eve@example.com X-Injected: yes body" is ready`,
		`We could not convert "evil name.avi Bcc: eve@example.com X-Injected: yes body" to MP3`,
	} {
		if !subjects[want] {
			t.Errorf("no subject %q among %v", want, subjects)
		}
	}
	if n := len(h.Mail.To("eve@example.com")); n != 0 {
		t.Errorf("%d emails to the injected Bcc", n)
	}
}

// Two notifier replicas on one queue, the same event delivered many times
// at once: one email.
func TestReplicasSendOnce(t *testing.T) {
	t.Parallel()
	h := notifiertest.NewHarness(t, nil)
	h.AddReplica()
	to := notifiertest.Recipient("replicas")
	job := notifiertest.NewJobID()
	env := h.Publish(events.TypeAudioReady, job, notifiertest.ReadyPayload(to))
	const copies = 10
	for range copies - 1 {
		h.PublishEnvelope(events.TypeAudioReady, env)
	}
	h.Mail.WaitFor(to, 1, 15*time.Second)
	waitLogs(t, h, copies-1, "email already sent", job)
	time.Sleep(300 * time.Millisecond)
	if n := len(h.Mail.To(to)); n != 1 {
		t.Fatalf("%d emails for %d copies of one event on two replicas, want 1", n, copies)
	}
}

// Redis down: nothing is sent (exactly-once cannot be checked), the event
// is retried; Redis back: one email.
func TestRedisDownThenBackSendsOnce(t *testing.T) {
	t.Parallel()
	rs := notifiertest.StartRedis(t)
	h := notifiertest.NewHarnessRedis(t, nil, rs.Addr(), func(c *notify.Config) {
		c.RetryDelay = 300 * time.Millisecond
		c.MaxAttempts = 40
	})
	rs.Stop()
	to := notifiertest.Recipient("redisdown")
	job := notifiertest.NewJobID()
	h.Publish(events.TypeAudioReady, job, notifiertest.ReadyPayload(to))
	waitLogs(t, h, 2, "handler failed; retrying later", `"job_id":"`+job+`"`, "redis")
	if n := len(h.Mail.To(to)); n != 0 {
		t.Fatalf("%d emails sent while Redis was down", n)
	}
	rs.Start()
	h.Mail.WaitFor(to, 1, 15*time.Second)
	time.Sleep(time.Second)
	if n := len(h.Mail.To(to)); n != 1 {
		t.Fatalf("%d emails after Redis came back, want 1", n)
	}
}
