// Package notify is the notifier: it consumes audio.ready and audio.failed
// and emails the job's owner, exactly once per job and outcome; and
// account.verify and account.exists (from auth) and emails the account's
// address its verification link or a sign-up notice, once per event (the
// envelope's job_id names the email).
//
// Exactly once. Delivery is at least once, and an event may be published
// twice, so each email is guarded by one Redis key per job and outcome,
// notifier:sent:<job_id>:<outcome>:
//
//  1. SET key "sending:<token>" NX PX lockTTL. If the key exists and says
//     "sent", the email went out before: ack and send nothing. If it says
//     "sending", another delivery is sending right now (or crashed doing
//     so): retry later; the lock expires after lockTTL.
//  2. Send over SMTP.
//  3. Accepted: SET key "sent …" EX SentTTL. Refused: delete our lock, so the
//     retry can send.
//
// The window that remains: the process dies (or Redis fails for good)
// between the server accepting the message and step 3. The lock then
// expires and a redelivery sends a second email. See docs/notifier.md.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/notifier/internal/compose"
	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/ratelimit"
)

// Outcomes, the last part of the sent key.
const (
	outcomeReady  = "ready"
	outcomeFailed = "failed"
	outcomeVerify = "verify"
	outcomeExists = "exists"
)

// maxJobID bounds the job id (it goes into a Redis key and the Message-ID).
const maxJobID = 128

// Sender sends one email; *mailer.Mailer is the implementation. Its errors
// say whether they are permanent with mailer.IsPermanent.
type Sender interface {
	Send(ctx context.Context, m mailer.Mail) error
}

var _ Sender = (*mailer.Mailer)(nil)

// Notifier handles the notifier's deliveries.
type Notifier struct {
	cfg      Config
	sender   Sender
	composer *compose.Composer
	redis    *redis.Client
	logger   *slog.Logger
	metrics  *metrics
	// mails bounds the emails to one address an hour (Config.MailsPerHour).
	mails *ratelimit.Limiter
}

// New returns a Notifier; cfg comes from the notifier's app.ReadConfig (or a test).
func New(cfg Config, sender Sender, rdb *redis.Client, logger *slog.Logger) (*Notifier, error) {
	composer, err := compose.New(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	if len(cfg.Bindings) == 0 {
		cfg.Bindings = DefaultBindings()
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Notifier{cfg: cfg, sender: sender, composer: composer, redis: rdb, logger: logger, metrics: newMetrics(),
		mails: ratelimit.New(rdb, KeyPrefix+"mails:", cfg.MailsPerHour, time.Hour)}, nil
}

// Spec is the queue the notifier consumes.
func (n *Notifier) Spec() broker.QueueSpec {
	return n.cfg.ConsumerConfig.Spec(n.cfg.Bindings...)
}

// Run consumes until ctx is cancelled. It never gives up: should Consume
// return early (the connection was closed under it), it logs and starts
// again after a pause.
func (n *Notifier) Run(ctx context.Context, conn *broker.Conn) {
	spec := n.Spec()
	n.logger.Info("notifier consuming", "queue", spec.Name, "bindings", spec.Bindings,
		"retry_delay", spec.RetryDelay.String(), "max_attempts", spec.MaxAttempts, "smtp", n.cfg.SMTP.Addr)
	for {
		err := broker.Consume(ctx, conn, spec, n.Handle)
		if ctx.Err() != nil {
			return
		}
		n.logger.Error("consumer stopped unexpectedly; restarting", "queue", spec.Name, "err", fmt.Sprint(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// Handle handles one delivery (a broker.Handler). nil: the email was sent
// now or before. broker.Permanent: the event is unusable or the server
// refused the message for good (to <queue>.dead). Any other error: retry.
func (n *Notifier) Handle(ctx context.Context, d broker.Delivery) error {
	logger := n.logger.With("job_id", d.JobID, "message_id", d.ID, "type", d.Type, "attempt", d.Attempt)
	mail, outcome, err := n.prepare(d)
	if err != nil {
		logger.ErrorContext(ctx, "invalid event; dead-lettering it", "err", err.Error())
		n.metrics.count(outcome, resultInvalid)
		return broker.Permanent(err)
	}
	key := KeyPrefix + "sent:" + d.JobID + ":" + outcome

	token := broker.NewID()
	acquired, err := n.redis.SetNX(ctx, key, "sending:"+token, n.cfg.lockTTL()).Result()
	if err != nil {
		n.metrics.count(outcome, resultRetry)
		return fmt.Errorf("job %s: redis lock %s: %w", d.JobID, key, err)
	}
	if !acquired {
		state, err := n.redis.Get(ctx, key).Result()
		if err == nil && strings.HasPrefix(state, "sent") {
			n.metrics.count(outcome, resultDuplicate)
		} else {
			n.metrics.count(outcome, resultRetry)
		}
		switch {
		case errors.Is(err, redis.Nil):
			return fmt.Errorf("job %s: lock %s vanished; retrying", d.JobID, key)
		case err != nil:
			return fmt.Errorf("job %s: redis get %s: %w", d.JobID, key, err)
		case strings.HasPrefix(state, "sent"):
			logger.InfoContext(ctx, "email already sent; nothing to do", "outcome", outcome)
			return nil
		default:
			return fmt.Errorf("job %s: another delivery is sending the %s email; retrying later", d.JobID, outcome)
		}
	}

	// The address's mails an hour, counted once per job and outcome (a
	// retry after a failed send is not a second email).
	wait, err := n.mails.Take(ctx, recipientKey(mail.To), d.JobID+":"+outcome)
	if err != nil {
		n.unlock(key, token, logger)
		n.metrics.count(outcome, resultRetry)
		return fmt.Errorf("job %s: %w", d.JobID, err)
	}
	if wait > 0 {
		// Dropped for good: marked as handled, so no copy of the event
		// sends it later either.
		n.metrics.count(outcome, resultLimited)
		logger.WarnContext(ctx, "email dropped: the address received its mails for this hour", "outcome", outcome,
			"limit", n.cfg.MailsPerHour, "window_ends_in_s", int64(wait.Seconds()))
		n.markSent(ctx, key, logger)
		return nil
	}

	start := time.Now()
	if err := n.sender.Send(ctx, mail); err != nil {
		n.unlock(key, token, logger)
		if mailer.IsPermanent(err) {
			n.metrics.count(outcome, resultRejected)
			logger.ErrorContext(ctx, "mail server refused the email for good; dead-lettering it", "to", mail.To, "err", err.Error())
			return broker.Permanent(fmt.Errorf("job %s: %w", d.JobID, err))
		}
		n.metrics.count(outcome, resultRetry)
		return fmt.Errorf("job %s: %w", d.JobID, err)
	}
	sent := time.Now()
	n.metrics.count(outcome, resultSent)
	n.metrics.send.Observe(sent.Sub(start).Seconds())
	n.metrics.endToEnd.Observe(max(0, sent.Sub(d.OccurredAt).Seconds()))
	logger.InfoContext(ctx, "email sent", "outcome", outcome, "to", mail.To, "smtp_ms", sent.Sub(start).Milliseconds(),
		"since_event_ms", sent.Sub(d.OccurredAt).Milliseconds())
	n.markSent(ctx, key, logger)
	return nil
}

// prepare validates the delivery and renders its email.
func (n *Notifier) prepare(d broker.Delivery) (mailer.Mail, string, error) {
	if err := validJobID(d.JobID); err != nil {
		return mailer.Mail{}, "", err
	}
	var (
		email   compose.Email
		to      string
		outcome string
		err     error
	)
	switch d.Type {
	case events.TypeAudioReady:
		outcome = outcomeReady
		var p events.AudioReady
		if p, err = events.Decode[events.AudioReady](d.Payload); err == nil {
			to = p.OwnerEmail
			email, err = n.composer.Ready(d.JobID, p)
		}
	case events.TypeAudioFailed:
		outcome = outcomeFailed
		var p events.AudioFailed
		if p, err = events.Decode[events.AudioFailed](d.Payload); err == nil {
			to = p.OwnerEmail
			email, err = n.composer.Failed(d.JobID, p)
		}
	case events.TypeAccountVerify:
		outcome = outcomeVerify
		var p events.AccountVerify
		if p, err = events.Decode[events.AccountVerify](d.Payload); err == nil {
			to = p.Email
			email, err = n.composer.Verify(p)
		}
	case events.TypeAccountExists:
		outcome = outcomeExists
		var p events.AccountExists
		if p, err = events.Decode[events.AccountExists](d.Payload); err == nil {
			to = p.Email
			email, err = n.composer.Exists(p)
		}
	default:
		return mailer.Mail{}, "", fmt.Errorf("event type %q: the notifier handles %s, %s, %s and %s only", d.Type,
			events.TypeAudioReady, events.TypeAudioFailed, events.TypeAccountVerify, events.TypeAccountExists)
	}
	if err != nil {
		return mailer.Mail{}, outcome, fmt.Errorf("%s event: %w", d.Type, err)
	}
	return mailer.Mail{
		To:        to,
		Subject:   email.Subject,
		Text:      email.Text,
		HTML:      email.HTML,
		Language:  email.Language,
		MessageID: "audiomill." + d.JobID + "." + outcome,
	}, outcome, nil
}

// recipientKey names an address's mail count: a hash of the address,
// lower-cased (no address in Redis key names).
func recipientKey(addr string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(addr)))
	return hex.EncodeToString(sum[:16])
}

// unlockScript deletes the lock only if it is still ours.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// unlock releases the send lock after a failed send, so the retry can send
// at once rather than after lockTTL. A failure only delays that retry.
func (n *Notifier) unlock(key, token string, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := unlockScript.Run(ctx, n.redis, []string{key}, "sending:"+token).Err(); err != nil {
		logger.Warn("could not release the send lock; the retry waits for it to expire", "key", key, "err", err.Error())
	}
}

// markSent records that the email was accepted. It tries a few times; if
// Redis stays unreachable, the message is still acked (the email went
// out), and only a copy of the event delivered after the lock expires
// could send a second one.
func (n *Notifier) markSent(ctx context.Context, key string, logger *slog.Logger) {
	value := "sent " + time.Now().UTC().Format(time.RFC3339)
	ctx = context.WithoutCancel(ctx)
	var err error
	for i, wait := range []time.Duration{0, 200 * time.Millisecond, time.Second, 3 * time.Second} {
		if i > 0 {
			time.Sleep(wait)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = n.redis.Set(wctx, key, value, n.cfg.SentTTL).Err()
		cancel()
		if err == nil {
			return
		}
	}
	logger.ErrorContext(ctx, "email sent but its sent mark could not be written; a redelivery after the lock expires would send it again",
		"key", key, "err", err.Error())
}

// validJobID: the job id is required, bounded and has no spaces or
// control characters (it goes into a Redis key and a header).
func validJobID(id string) error {
	switch {
	case id == "":
		return errors.New("envelope job_id is required")
	case len(id) > maxJobID:
		return fmt.Errorf("envelope job_id is longer than %d bytes", maxJobID)
	case strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return errors.New("envelope job_id contains spaces or control characters")
	}
	return nil
}
