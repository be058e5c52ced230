package notify_test

import (
	"testing"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/notifiertest"
	"github.com/audiomill/audiomill/notifier/internal/notify"
	"github.com/audiomill/audiomill/platform/events"
)

// TestMailsPerHour: past NOTIFIER_MAILS_PER_HOUR an address's email is
// dropped with a log line, not retried and not dead-lettered; another
// address still gets its email.
func TestMailsPerHour(t *testing.T) {
	t.Parallel()
	h := notifiertest.NewHarness(t, nil, func(c *notify.Config) { c.MailsPerHour = 2 })
	to := notifiertest.Recipient("limited")
	for range 3 {
		h.Publish(events.TypeAudioReady, notifiertest.NewJobID(), notifiertest.ReadyPayload(to))
	}
	h.Mail.WaitFor(to, 2, 15*time.Second)
	waitLogs(t, h, 1, "email dropped")
	other := notifiertest.Recipient("other")
	h.Publish(events.TypeAudioReady, notifiertest.NewJobID(), notifiertest.ReadyPayload(other))
	h.Mail.WaitFor(other, 1, 15*time.Second)
	time.Sleep(time.Second) // a retry would come 200 ms after
	if n := len(h.Mail.To(to)); n != 2 {
		t.Errorf("%d emails to the limited address, want 2", n)
	}
	if n := h.CountLogs("email dropped"); n != 1 {
		t.Errorf("%d drop lines, want 1 (no retry)", n)
	}
	if dead := h.Dead(); len(dead) != 0 {
		t.Errorf("%d messages dead-lettered, want none", len(dead))
	}
}
