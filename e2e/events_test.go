package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/audiomill/audiomill/e2e/browser"
	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/testenv"
)

// liveTarget is the bound: a status change reaches the browser
// within 500 ms of the gateway consuming its event.
const liveTarget = 500 * time.Millisecond

// eventsStack is auth and a gateway behind an edge of the test's own; the
// gateway's broker is a virtual host of the test's own (no converter
// answers there), and its database is reached directly to seed jobs.
type eventsStack struct {
	edge  *stack.Edge
	db    *pgx.Conn
	conn  *broker.Conn
	user  user
	owner string
}

func startEventsStack(tb testing.TB) *eventsStack {
	tb.Helper()
	s := stack.New(tb)
	dbURL, vhost := testenv.NewDatabase(tb), testenv.VHost(tb)
	a := s.Start("auth")
	authURL := "http://" + a.Addr
	g := s.Start("gateway", "DATABASE_URL="+dbURL, "AMQP_URL="+vhost,
		"AUTH_URL="+authURL, "AUTH_JWKS_URL="+authURL+"/.well-known/jwks.json")
	e := s.StartEdge()
	testenv.Eventually(tb, 10*time.Second, func() bool { return inUpstream(e, g.Addr) }, "gateway never routed")
	ctx := testenv.Context(tb, 30*time.Second)
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close(context.Background()) })
	logger, _ := logging.New(io.Discard, "error", "test")
	conn, err := broker.Dial(ctx, vhost, logger)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	u := signUpAccount(tb, e)
	return &eventsStack{edge: e, db: db, conn: conn, user: u, owner: subjectOf(tb, u.token)}
}

// queuedJob writes a queued job of the user straight into the gateway's
// database (as an upload would have) and returns its id.
func (es *eventsStack) queuedJob(tb testing.TB, i int) string {
	tb.Helper()
	id := jobID("e", i)
	_, err := es.db.Exec(testenv.Context(tb, 10*time.Second), `insert into jobs (id, owner, owner_email, status, progress,
		video_file_id, video_name, video_content_type, video_size, created_at, updated_at)
		values ($1, $2, 'live@example.com', 'queued', 0, $3, 'talk.mp4', 'video/mp4', 1048576, now(), now())`,
		id, es.owner, "video-"+id)
	if err != nil {
		tb.Fatalf("seed job: %v", err)
	}
	return id
}

// progress publishes the converter's audio.progress of job.
func (es *eventsStack) progress(tb testing.TB, job string, pct int) {
	tb.Helper()
	p := events.AudioProgress{VideoID: "video-" + job, Percent: pct}
	env, err := broker.NewEnvelope(p.EventType(), job, "e2e-live", p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := es.conn.Publish(testenv.Context(tb, 10*time.Second), p.EventType(), env); err != nil {
		tb.Fatal(err)
	}
}

type liveJob struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	Progress  int       `json:"progress"`
	UpdatedAt time.Time `json:"updated_at"`
}

// next reads the next job event of the stream.
func nextLive(tb testing.TB, s *testenv.EventStream) (testenv.Event, liveJob) {
	tb.Helper()
	ev := s.NextEvent(tb, 10*time.Second)
	var j liveJob
	if ev.Event != "job" || json.Unmarshal([]byte(ev.Data), &j) != nil {
		tb.Fatalf("event %+v, want a job event", ev)
	}
	return ev, j
}

// TestJobEventsThroughEdge: through the edge, each status change arrives
// on the open stream as it happens (no buffering holds it back until the
// stream ends), and the stream stays open after it.
func TestJobEventsThroughEdge(t *testing.T) {
	es := startEventsStack(t)
	s, resp := testenv.OpenEvents(t, es.edge.URL("/api/v1/jobs/events"), es.user.token, "")
	if s == nil {
		t.Fatalf("open through the edge: %d %s", resp.Status, resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if ev := s.NextEvent(t, 10*time.Second); ev.Event != "hello" {
		t.Fatalf("first event %+v", ev)
	}
	job := es.queuedJob(t, 1)
	for _, pct := range []int{25, 50, 75} {
		es.progress(t, job, pct)
		start := time.Now()
		ev, j := nextLive(t, s)
		if j.ID != job || j.Status != "converting" || j.Progress != pct {
			t.Fatalf("event %s, want converting %d", ev.Data, pct)
		}
		if d := ev.At.Sub(start); d > 2*time.Second {
			t.Errorf("progress %d arrived after %v", pct, d)
		}
	}
	// Still open: nothing ended the response.
	if ev, err := s.Next(500 * time.Millisecond); err != nil && err.Error() != "no event within 500ms" {
		t.Errorf("the stream ended after the events: %v (%+v)", err, ev)
	}
}

// BenchmarkJobEventLatency measures, through the edge, the time from
// publishing an audio.progress to RabbitMQ (as the converter does) to its
// event arriving on an open stream (publish→client), and from the job's
// updated_at, set by the gateway's UPDATE when it consumed the event, to
// the arrival (consume→client); p50 and p95 of each, and p95 as a share of
// the 500 ms target. One event at a time, so each is the latency of an
// idle system. Run with -benchtime=200x.
func BenchmarkJobEventLatency(b *testing.B) {
	es := startEventsStack(b)
	s, resp := testenv.OpenEvents(b, es.edge.URL("/api/v1/jobs/events"), es.user.token, "")
	if s == nil {
		b.Fatalf("open: %d %s", resp.Status, resp.Body)
	}
	s.NextEvent(b, 10*time.Second) // hello
	var publish, consume []time.Duration
	job := ""
	b.ResetTimer()
	for i := range b.N {
		pct := i%99 + 1
		if pct == 1 {
			b.StopTimer()
			job = es.queuedJob(b, i)
			b.StartTimer()
		}
		start := time.Now()
		es.progress(b, job, pct)
		ev, j := nextLive(b, s)
		if j.ID != job || j.Progress != pct {
			b.Fatalf("event %s, want %s at %d", ev.Data, job, pct)
		}
		publish = append(publish, ev.At.Sub(start))
		consume = append(consume, ev.At.Sub(j.UpdatedAt))
	}
	b.StopTimer()
	p50, p95 := percentiles(publish)
	c50, c95 := percentiles(consume)
	b.ReportMetric(float64(p50.Microseconds())/1000, "publish-p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "publish-p95-ms")
	b.ReportMetric(float64(c50.Microseconds())/1000, "consume-p50-ms")
	b.ReportMetric(float64(c95.Microseconds())/1000, "consume-p95-ms")
	b.ReportMetric(float64(c95)/float64(liveTarget), "consume-p95-×-target")
	b.Logf("%d events: publish→client p50 %v p95 %v; consume→client p50 %v p95 %v (target ≤ %v)",
		len(publish), p50, p95, c50, c95, liveTarget)
}

func percentiles(d []time.Duration) (p50, p95 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*95/100)]
}

// BenchmarkJobEventToBrowser is BenchmarkJobEventLatency with the page as
// the client: the job list open in headless Chromium through the edge, the
// time from the job's updated_at (set when the gateway consumed the
// converter's event) to the page's row showing the new percentage
// (recorded in the page by a MutationObserver, on the same clock).
func BenchmarkJobEventToBrowser(b *testing.B) {
	es := startEventsStack(b)
	br := newBrowser(b, 1280, 900)
	openPage(b, br, es.edge.URL("/"))
	browserLogin(b, br, es.user)
	browser.Eval[bool](br, `(() => {
	  window.__shown = {};
	  new MutationObserver((changes) => {
	    for (const c of changes) {
	      const row = c.target.closest?.('li.job');
	      if (row && c.target.matches('.job-progress')) window.__shown[row.dataset.jobId + ' ' + c.target.value] = performance.timeOrigin + performance.now();
	    }
	  }).observe(document.getElementById('jobs'), {subtree: true, attributes: true, attributeFilter: ['value']});
	  return true;
	})()`)
	var lat []time.Duration
	job := ""
	b.ResetTimer()
	for i := range b.N {
		pct := i%99 + 1
		if pct == 1 {
			b.StopTimer()
			job = es.queuedJob(b, i)
			b.StartTimer()
		}
		es.progress(b, job, pct)
		key := fmt.Sprintf("%s %d", job, pct)
		br.WaitJS(10*time.Second, fmt.Sprintf(`window.__shown[%q] !== undefined`, key))
		shown := browser.Eval[float64](br, fmt.Sprintf(`window.__shown[%q]`, key))
		var updated time.Time
		if err := es.db.QueryRow(testenv.Context(b, 10*time.Second), `select updated_at from jobs where id = $1`, job).Scan(&updated); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.UnixMicro(int64(shown*1000)).Sub(updated))
	}
	b.StopTimer()
	p50, p95 := percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds())/1000, "consume→page-p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "consume→page-p95-ms")
	b.ReportMetric(float64(p95)/float64(liveTarget), "p95-×-target")
	b.Logf("%d events: consume→page p50 %v p95 %v (target ≤ %v)", len(lat), p50, p95, liveTarget)
}
