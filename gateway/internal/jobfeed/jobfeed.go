// Package jobfeed wakes the live job streams of one gateway replica
// (GET /api/v1/jobs/events) when their owner's jobs change, whichever
// replica applied the change.
//
// Every change of a job is recorded in PostgreSQL (jobs.Change, table
// job_events) by the transaction that makes it, which notifies the channel
// jobs.ChangesChannel with the owner. A Hub holds one dedicated connection
// that LISTENs on that channel and wakes the subscriptions of that owner;
// a woken stream reads its owner's changes after the last one it sent. The
// notification only says "look": the table is the truth, so a
// notification lost while the connection was down costs nothing: after
// each reconnection the Hub wakes every subscription.
package jobfeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/errs"
)

// Defaults of Options left zero.
const (
	// DefaultPerUser bounds one user's streams on a replica: a few tabs
	// and devices.
	DefaultPerUser = 8
	// DefaultTotal bounds the streams of a replica (each holds a
	// connection and a goroutine).
	DefaultTotal = 5000
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// Options configure a Hub.
type Options struct {
	// ConnConfig is the database to LISTEN on (the jobs' database).
	ConnConfig *pgx.ConnConfig
	// PerUser and Total bound the subscriptions of one owner and of the
	// Hub (DefaultPerUser, DefaultTotal).
	PerUser, Total int
	Logger         *slog.Logger
	// Registerer takes the Hub's metrics (none when nil).
	Registerer prometheus.Registerer
}

// Hub fans the change notifications out to the subscriptions of a replica.
type Hub struct {
	opts Options

	mu     sync.Mutex
	subs   map[string]map[*Subscription]struct{}
	n      int
	closed bool
	done   chan struct{}

	streams   prometheus.Gauge
	refused   *prometheus.CounterVec
	reconnect prometheus.Counter
}

// New returns a Hub; Run listens.
func New(opts Options) *Hub {
	if opts.PerUser <= 0 {
		opts.PerUser = DefaultPerUser
	}
	if opts.Total <= 0 {
		opts.Total = DefaultTotal
	}
	h := &Hub{opts: opts, subs: map[string]map[*Subscription]struct{}{}, done: make(chan struct{}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_job_event_streams",
			Help: "Live job event streams open on this replica.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_job_event_streams_refused_total",
			Help: "Job event streams refused, by reason (per_user, total).",
		}, []string{"reason"}),
		reconnect: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_job_events_listen_connects_total",
			Help: "Connections of the job events listener (LISTEN) made.",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.streams, h.refused, h.reconnect)
	}
	return h
}

// Subscription is one stream's place in the Hub.
type Subscription struct {
	hub   *Hub
	owner string
	wake  chan struct{}
	once  sync.Once
}

// C receives when the owner's jobs may have changed (wake-ups coalesce:
// read the changes after the last one sent, then wait again).
func (s *Subscription) C() <-chan struct{} { return s.wake }

// Close leaves the Hub.
func (s *Subscription) Close() {
	s.once.Do(func() {
		h := s.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs[s.owner], s)
		if len(h.subs[s.owner]) == 0 {
			delete(h.subs, s.owner)
		}
		h.n--
		h.streams.Dec()
	})
}

// Subscribe adds a stream of owner's changes. Over the bounds it is
// errs.RateLimited; after Close, errs.Unavailable. Subscribe before reading
// the changes, so that none committed meanwhile goes unnoticed.
func (h *Hub) Subscribe(owner string) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, errs.E(errs.Unavailable, "the gateway is shutting down; reconnect")
	case len(h.subs[owner]) >= h.opts.PerUser:
		h.refused.WithLabelValues("per_user").Inc()
		return nil, errs.E(errs.RateLimited, "too many open event streams for this user (at most %d); close one", h.opts.PerUser)
	case h.n >= h.opts.Total:
		h.refused.WithLabelValues("total").Inc()
		return nil, errs.E(errs.RateLimited, "too many open event streams on this instance; retry later")
	}
	s := &Subscription{hub: h, owner: owner, wake: make(chan struct{}, 1)}
	if h.subs[owner] == nil {
		h.subs[owner] = map[*Subscription]struct{}{}
	}
	h.subs[owner][s] = struct{}{}
	h.n++
	h.streams.Inc()
	return s, nil
}

// Done is closed by Close: the streams end (their clients reconnect to
// another replica).
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close ends every stream and refuses new ones: at shutdown, before the
// server drains (an open stream would hold the drain until its timeout).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// wake wakes owner's subscriptions, or everyone's when all.
func (h *Hub) wake(owner string, all bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	notify := func(set map[*Subscription]struct{}) {
		for s := range set {
			select {
			case s.wake <- struct{}{}:
			default: // already pending
			}
		}
	}
	if all {
		for _, set := range h.subs {
			notify(set)
		}
		return
	}
	notify(h.subs[owner])
}

// Run listens until ctx ends, reconnecting with back-off (100 ms doubling
// to 5 s) when the connection fails; after each (re)connection it wakes
// every subscription, so that a change notified while it was away is read.
func (h *Hub) Run(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		connected, err := h.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = minBackoff
		}
		h.opts.Logger.Warn("job events listener: connection lost; reconnecting", "err", err.Error(), "in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen holds one connection until it fails; connected says whether it
// got as far as listening.
func (h *Hub) listen(ctx context.Context) (connected bool, err error) {
	if h.opts.ConnConfig == nil {
		return false, errors.New("no database configuration")
	}
	conn, err := pgx.ConnectConfig(ctx, h.opts.ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{jobs.ChangesChannel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen %s: %w", jobs.ChangesChannel, err)
	}
	h.reconnect.Inc()
	h.wake("", true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for notifications: %w", err)
		}
		h.wake(n.Payload, false)
	}
}
