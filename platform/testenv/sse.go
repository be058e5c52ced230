package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Event is one server-sent event (comments such as ": ping" are Comment
// events, with Event and Data empty).
type Event struct {
	ID, Event, Data string
	Comment         string
	// At is when its last line was read.
	At time.Time
}

// EventStream reads a text/event-stream answer line by line, as the web
// app does with fetch() and a stream reader.
type EventStream struct {
	Resp   *http.Response
	cancel context.CancelFunc
	events chan Event
	// end is why the stream ended, set before events is closed.
	end error
}

// OpenEvents sends GET url with the bearer token and, when lastID is not
// empty, Last-Event-ID. An answer other than 200 is returned read whole
// (Response) with a nil stream; a failed request fails tb. The stream is
// closed when tb ends.
func OpenEvents(tb testing.TB, url, token, lastID string) (*EventStream, Response) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		cancel()
		tb.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return nil, Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	}
	s := &EventStream{Resp: resp, cancel: cancel, events: make(chan Event, 1024)}
	go s.read()
	tb.Cleanup(s.Close)
	return s, Response{Status: resp.StatusCode, Header: resp.Header}
}

func (s *EventStream) read() {
	defer s.Resp.Body.Close()
	sc := bufio.NewScanner(s.Resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev Event
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || len(data) > 0 || ev.ID != "" {
				ev.Data, ev.At = strings.Join(data, "\n"), time.Now()
				s.events <- ev
			}
			ev, data = Event{}, nil
		case strings.HasPrefix(line, ":"):
			s.events <- Event{Comment: strings.TrimSpace(line[1:]), At: time.Now()}
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				ev.ID = v
			case "event":
				ev.Event = v
			case "data":
				data = append(data, v)
			}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	s.end = err
	close(s.events)
}

// Next returns the next event (comments included) within timeout; an
// error when the stream ended (io.EOF for a clean end) or none came.
func (s *EventStream) Next(timeout time.Duration) (Event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ev, ok := <-s.events:
		if !ok {
			return Event{}, s.end
		}
		return ev, nil
	case <-t.C:
		return Event{}, fmt.Errorf("no event within %v", timeout)
	}
}

// NextEvent is Next skipping comments; a failure fails tb.
func (s *EventStream) NextEvent(tb testing.TB, timeout time.Duration) Event {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev, err := s.Next(time.Until(deadline))
		if err != nil {
			tb.Fatalf("event stream: %v", err)
		}
		if ev.Comment == "" {
			return ev
		}
	}
}

// Close ends the stream.
func (s *EventStream) Close() { s.cancel() }
