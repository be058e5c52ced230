package notify

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/platform/httpapi"
)

// Results counted by notifier_emails_total.
const (
	resultSent      = "sent"      // the server accepted the email
	resultDuplicate = "duplicate" // already sent: nothing done
	resultRetry     = "retry"     // transient failure: retried later
	resultRejected  = "rejected"  // the server refused it for good
	resultInvalid   = "invalid"   // the event is unusable
	resultLimited   = "limited"   // over the address's mails an hour: dropped
)

type metrics struct {
	emails   *prometheus.CounterVec
	send     prometheus.Histogram
	endToEnd prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		emails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notifier_emails_total",
			Help: "Deliveries handled, by outcome (ready, failed, unknown) and result (sent, duplicate, retry, rejected, invalid, limited).",
		}, []string{"outcome", "result"}),
		send: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "notifier_smtp_send_seconds",
			Help:    "Time to send one accepted email over SMTP (connect to accepted).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "notifier_event_to_email_seconds",
			Help:    "Time from the event's occurred_at to its email being accepted.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
	}
}

// RegisterMetrics registers the notifier's metrics (notifier_emails_total,
// notifier_smtp_send_seconds, notifier_event_to_email_seconds) with reg.
func (n *Notifier) RegisterMetrics(reg prometheus.Registerer) error {
	return httpapi.RegisterMetrics(reg, "notifier", n.metrics.emails, n.metrics.send, n.metrics.endToEnd)
}

func (m *metrics) count(outcome, result string) {
	if outcome == "" {
		outcome = "unknown"
	}
	m.emails.WithLabelValues(outcome, result).Inc()
}
