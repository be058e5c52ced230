package web

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
)

// Defaults of the event streams (Options.PingInterval).
const (
	// DefaultPingInterval is how often an idle stream sends ": ping" (the
	// edge's and the browsers' idle timeouts are longer).
	DefaultPingInterval = 15 * time.Second
	// eventsBatch is how many changes one read of a stream takes.
	eventsBatch = 100
	// eventWriteTimeout bounds each write to a stream: a client that stops
	// reading is cut off.
	eventWriteTimeout = 30 * time.Second
)

// jobEvents is GET /api/v1/jobs/events: the caller's job changes as server-
// sent events (docs/gateway.md, "Live job events"). Malformed Last-Event-ID
// is 400; over the stream bounds 429; the database away 503; all before the
// stream starts. The stream ends when the token expires, at shutdown, or
// when the database fails mid-stream (the client reconnects with its
// Last-Event-ID).
func (a *API) jobEvents(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if a.opts.Feed == nil {
		return errs.E(errs.Unavailable, "live job events are not configured")
	}
	last, resuming, err := lastEventID(r)
	if err != nil {
		return err
	}
	sub, err := a.opts.Feed.Subscribe(p.Subject)
	if err != nil {
		return err
	}
	defer sub.Close()
	ctx := r.Context()
	b, err := a.opts.Jobs.Bounds(ctx, p.Subject)
	if err != nil {
		return err
	}
	reset := false
	switch {
	case !resuming:
		last = b.Latest
	case last < b.Pruned || last > b.Newest:
		a.opts.Logger.InfoContext(ctx, "job events: Last-Event-ID no longer kept; reset",
			"last_event_id", last, "pruned", b.Pruned, "newest", b.Newest)
		reset, last = true, b.Latest
	}

	s := &eventStream{w: w, rc: http.NewResponseController(w)}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s.send("hello", strconv.FormatInt(last, 10), []byte("{}"))
	if reset {
		s.send("reset", "", []byte("{}"))
	}
	if s.flush() != nil {
		return nil
	}

	var expired <-chan time.Time
	if !p.ExpiresAt.IsZero() {
		t := time.NewTimer(time.Until(p.ExpiresAt))
		defer t.Stop()
		expired = t.C
	}
	ping := time.NewTicker(cmp.Or(a.opts.PingInterval, DefaultPingInterval))
	defer ping.Stop()
	for {
		// Send what is there, a batch at a time.
		for {
			list, err := a.opts.Jobs.Changes(ctx, p.Subject, last, eventsBatch)
			if err != nil {
				if ctx.Err() == nil {
					a.opts.Logger.WarnContext(ctx, "job events: reading changes failed; ending the stream", "err", err.Error())
				}
				return nil
			}
			for _, c := range list {
				s.send(string(c.Kind), strconv.FormatInt(c.ID, 10), changeData(c))
				last = c.ID
			}
			if len(list) > 0 && s.flush() != nil {
				return nil
			}
			if len(list) < eventsBatch {
				break
			}
		}
		// Wait for a wake-up: every change is notified in its transaction,
		// and the feed wakes every stream after it reconnects, so a ping
		// reads nothing.
	wait:
		for {
			select {
			case <-sub.C():
				break wait
			case <-ping.C:
				if s.ping() != nil {
					return nil
				}
			case <-expired:
				a.opts.Logger.DebugContext(ctx, "job events: token expired; stream ended")
				return nil
			case <-a.opts.Feed.Done():
				return nil
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// lastEventID reads the Last-Event-ID header: resuming is false without
// one; anything but a decimal id (0 or more) is errs.Invalid.
func lastEventID(r *http.Request) (id int64, resuming bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		return 0, false, nil
	}
	// Digits only (no sign), within int64.
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, false, errs.E(errs.Invalid, "Last-Event-ID must be the id of an event of this stream (a decimal number)")
	}
	return int64(n), true, nil
}

// changeData is an event's data: the job as GET /api/v1/jobs/{id} shows
// it, or {"id":…} for a delete.
func changeData(c jobs.Change) []byte {
	var v any = viewOf(c.Job)
	if c.Kind == jobs.ChangeDeleted {
		v = struct {
			ID string `json:"id"`
		}{c.JobID.Hex()}
	}
	b, err := json.Marshal(v)
	if err != nil { // a view of plain fields: cannot fail
		panic(fmt.Sprintf("web: encode change %d: %v", c.ID, err))
	}
	return b
}

// eventStream writes server-sent events; the first write error sticks.
type eventStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (s *eventStream) write(b []byte) {
	if s.err != nil {
		return
	}
	// No server write timeout applies to a stream (platform/httpapi sets
	// none); each write gets its own deadline.
	if err := s.rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
		return
	}
	_, s.err = s.w.Write(b)
}

// send writes one event (data is one line of JSON; no id line when id is
// empty).
func (s *eventStream) send(event, id string, data []byte) {
	msg := make([]byte, 0, len(data)+64)
	if id != "" {
		msg = append(append(append(msg, "id: "...), id...), '\n')
	}
	msg = append(append(append(msg, "event: "...), event...), '\n')
	msg = append(append(append(msg, "data: "...), data...), "\n\n"...)
	s.write(msg)
}

func (s *eventStream) ping() error {
	s.write([]byte(": ping\n\n"))
	return s.flush()
}

func (s *eventStream) flush() error {
	if s.err == nil {
		s.err = s.rc.Flush()
	}
	return s.err
}
