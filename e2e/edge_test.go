package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// probePath is a gateway route that is not one of its endpoints: the gateway
// answers it with its own 404 JSON, so any answer below 500 was served by an
// instance.
const probePath = "/api/v1/edge-probe"

// load sends requests from a few workers until stopped (or a bound is hit),
// counting answers below 500 and failures (transport errors, 5xx).
type load struct {
	ok, failed atomic.Int64
	stopc      chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	failures   []string
}

func startLoad(workers int, client *http.Client, newReq func(worker, i int) *http.Request) *load {
	l := &load{stopc: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range 50_000 { // bounded
				select {
				case <-l.stopc:
					return
				default:
				}
				req := newReq(w, i)
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode < 500 {
						l.ok.Add(1)
						continue
					}
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.failures = append(l.failures, fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) stop() {
	close(l.stopc)
	l.wg.Wait()
}

func (l *load) check(t *testing.T) {
	t.Helper()
	t.Logf("%d requests served, %d failed", l.ok.Load(), l.failed.Load())
	if l.ok.Load() == 0 {
		t.Fatal("no request was served")
	}
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d requests failed; first: %v", n, l.failures[:min(5, len(l.failures))])
	}
}

func newClient() *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}
}

func get(url string) func(int, int) *http.Request {
	return func(int, int) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		return req
	}
}

// inUpstream reports whether the edge's live config routes to addr.
func inUpstream(e *stack.Edge, addr string) bool {
	return strings.Contains(e.Config(), "server "+addr+" ")
}

// twoGateways starts two tagged gateways and the edge, and waits until the
// edge routes to both.
func twoGateways(t *testing.T) (*stack.Stack, *stack.Edge, [2]*testenv.Process) {
	t.Helper()
	s := stack.New(t)
	g := [2]*testenv.Process{s.Start("gateway"), s.Start("gateway")}
	e := s.StartEdge()
	testenv.Eventually(t, 10*time.Second, func() bool { return inUpstream(e, g[0].Addr) && inUpstream(e, g[1].Addr) },
		"the edge never routed to both gateways:\n%s", e.Config())
	return s, e, g
}

func TestEdgeKill9UnderLoadLosesNoGET(t *testing.T) {
	_, e, g := twoGateways(t)
	l := startLoad(4, newClient(), get(e.URL(probePath)))
	time.Sleep(time.Second)

	g[1].Kill()
	killed := time.Now()
	testenv.Eventually(t, 5*time.Second, func() bool { return !inUpstream(e, g[1].Addr) },
		"the killed gateway is still in the edge's upstream 5s later")
	removed := time.Since(killed)
	time.Sleep(time.Second)
	l.stop()
	t.Logf("killed instance out of the upstream after %v", removed.Round(10*time.Millisecond))
	l.check(t)
}

func TestEdgeSIGTERMUnderLoadLosesNothing(t *testing.T) {
	_, e, g := twoGateways(t)
	// GETs, and POSTs with a body (never retried by the edge once sent).
	l := startLoad(4, newClient(), func(w, i int) *http.Request {
		if w%2 == 0 {
			return get(e.URL(probePath))(w, i)
		}
		req, _ := http.NewRequest(http.MethodPost, e.URL(probePath), strings.NewReader(`{"n":`+strconv.Itoa(i)+`}`))
		req.Header.Set("Content-Type", "application/json")
		// A reload makes nginx close idle keep-alive connections; a POST
		// sent on one at that instant never reached nginx, and only an
		// idempotency key lets the client send it again (as our API's
		// clients do). What must never fail is a request nginx took.
		req.Header.Set("Idempotency-Key", fmt.Sprintf("edge-test-%d-%d", w, i))
		return req
	})
	time.Sleep(time.Second)

	if err := g[1].Terminate(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g[1].Exited:
		if err != nil {
			t.Fatalf("gateway exited with %v\n%s", err, g[1].Output())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not stop within 30s of SIGTERM")
	}
	time.Sleep(time.Second)
	l.stop()
	if inUpstream(e, g[1].Addr) {
		t.Error("the stopped gateway is still in the edge's upstream")
	}
	l.check(t)
}

func TestEdgeNewReplicaGetsTrafficWithin5s(t *testing.T) {
	s, e, _ := twoGateways(t)
	l := startLoad(2, newClient(), get(e.URL(probePath)))
	defer l.stop()

	g3 := s.Start("gateway")
	passing := time.Now()
	testenv.Eventually(t, 5*time.Second, func() bool {
		return slices.ContainsFunc(e.AccessLog(), func(a stack.AccessEntry) bool { return a.UpstreamAddr == g3.Addr })
	}, "the third gateway got no request within 5s of passing")
	t.Logf("third replica served its first request %v after passing", time.Since(passing).Round(10*time.Millisecond))
	if log := e.TemplateLog(); strings.Contains(log, "rejected") || strings.Contains(log, "reload failed") {
		t.Fatalf("a reload failed:\n%s", log)
	}
}

type apiError struct {
	Error struct{ Code, Message string } `json:"error"`
}

func fetch(t *testing.T, req *http.Request) (*http.Response, apiError) {
	t.Helper()
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body apiError
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s %s: %d with a body that is not JSON: %q", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return resp, body
}

func mustGet(t *testing.T, url string) (*http.Response, apiError) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return fetch(t, req)
}

func TestEdgeWithoutInstancesAnswers503NamingTheService(t *testing.T) {
	s := stack.New(t)
	e := s.StartEdge()
	for path, service := range map[string]string{
		probePath: "gateway", "/login": "gateway", "/download": "gateway",
		"/storage/v1/buckets": "filestorage", "/api/v1/token": "auth", "/.well-known/jwks.json": "auth",
	} {
		resp, body := mustGet(t, e.URL(path))
		if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "unavailable" ||
			!strings.Contains(body.Error.Message, service) {
			t.Errorf("GET %s = %d %+v, want 503 unavailable naming %s", path, resp.StatusCode, body, service)
		}
	}

	// A gateway comes: the edge routes to it by itself; it goes: 503 again.
	g := s.Start("gateway")
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, body := mustGet(t, e.URL(probePath))
		return resp.StatusCode == http.StatusNotFound && strings.Contains(body.Error.Message, probePath)
	}, "the edge never routed to the gateway that came up")
	g.Kill()
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, _ := mustGet(t, e.URL(probePath))
		return resp.StatusCode == http.StatusServiceUnavailable
	}, "the edge kept routing to a gateway that is gone")
}

func TestEdgeRequestIDAndErrors(t *testing.T) {
	s := stack.New(t)
	g := s.Start("gateway")
	e := s.StartEdge()
	testenv.Eventually(t, 10*time.Second, func() bool { return inUpstream(e, g.Addr) }, "gateway never routed")

	// A sane X-Request-Id is passed through to the gateway and echoed.
	req, _ := http.NewRequest(http.MethodGet, e.URL(probePath), nil)
	req.Header.Set("X-Request-Id", "req-edge-test-42")
	resp, _ := fetch(t, req)
	if got := resp.Header.Get("X-Request-Id"); got != "req-edge-test-42" {
		t.Errorf("X-Request-Id = %q, want the client's", got)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return strings.Contains(g.Output(), "req-edge-test-42") },
		"the gateway never logged the request id")

	// None (or a malformed one): the edge makes one up.
	for _, id := range []string{"", "bad id with spaces"} {
		req, _ := http.NewRequest(http.MethodGet, e.URL(probePath), nil)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		resp, _ := fetch(t, req)
		if got := resp.Header.Get("X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
			t.Errorf("sent %q: X-Request-Id = %q, want one the edge generated", id, got)
		}
	}

	// Unknown paths and oversized bodies get JSON errors from the edge itself.
	resp, body := mustGet(t, e.URL("/no/such/route"))
	if resp.StatusCode != http.StatusNotFound || body.Error.Code != "not_found" {
		t.Errorf("unknown route = %d %+v", resp.StatusCode, body)
	}
	status, raw := rawRequest(t, e.Port, "POST "+probePath+" HTTP/1.1\r\nHost: edge\r\nContent-Type: video/mp4\r\n"+
		"Content-Length: 3221225472\r\nConnection: close\r\n\r\n")
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(raw, `"code":"too_large"`) {
		t.Errorf("3 GiB upload = %d %q, want 413 JSON too_large", status, raw)
	}
	// The access log is JSON and carries the request id and the upstream
	// (nginx writes it a buffer at a time, at least every second).
	testenv.Eventually(t, 5*time.Second, func() bool {
		return slices.ContainsFunc(e.AccessLog(), func(a stack.AccessEntry) bool {
			return a.RequestID == "req-edge-test-42" && a.UpstreamAddr == g.Addr && a.Status == 404
		})
	}, "no access-log entry for req-edge-test-42 via %s", g.Addr)
}

// rawRequest writes head to the edge and returns the status and the body.
func rawRequest(t *testing.T, port int, head string) (int, string) {
	t.Helper()
	resp, body := exchange(t, port, head)
	if resp == nil {
		t.Fatalf("the edge closed the connection without answering %.60q", head)
	}
	return resp.StatusCode, body
}

// TestEdgeRateLimitsLogins: every route that takes a password is limited
// per client address at the edge (EDGE_LOGIN_RATE, EDGE_LOGIN_BURST): auth's
// /api/v1/token, and the web page's login POST /api/v1/session, which the
// gateway passes on to auth.
func TestEdgeRateLimitsLogins(t *testing.T) {
	e := webStack(t, false)
	for i, path := range []string{"/api/v1/token", "/api/v1/session"} {
		if i > 0 {
			time.Sleep(3 * time.Second) // the client's burst refills (5r/s, 10)
		}
		passed, limited := postBurst(t, e, path, 40, func(int) string { return `{}` }, func(int) bool { return true })
		t.Logf("40 rapid logins at %s: %d passed the edge, %d limited there", path, passed, limited)
		if limited == 0 || passed == 0 {
			t.Errorf("%s: %d passed, %d limited: want the burst through and the rest limited", path, passed, limited)
		}
	}
}

// TestEdgeRateLimitsSignUps: sign-ups are limited per client address at the
// edge (EDGE_SIGNUP_RATE, EDGE_SIGNUP_BURST), in front of auth's own limit:
// a burst passes, the rest get 429 JSON with Retry-After from the edge.
func TestEdgeRateLimitsSignUps(t *testing.T) {
	e := authBehindEdge(t, "EDGE_SIGNUP_RATE=6r/m", "EDGE_SIGNUP_BURST=2")
	signUp := func(i int) string {
		return fmt.Sprintf(`{"email":"edge-signup-%d-%d@example.com","password":"a long enough password"}`, time.Now().UnixNano(), i)
	}
	passed, limited := postBurst(t, e, "/api/v1/users", 10, signUp, func(status int) bool { return status == http.StatusAccepted })
	t.Logf("10 rapid sign-ups: %d reached auth, %d limited at the edge", passed, limited)
	if passed == 0 || passed > 3 || limited == 0 {
		t.Fatalf("%d passed, %d limited: want the burst (1 + 2) through and the rest limited", passed, limited)
	}
}

// authBehindEdge starts auth and an edge (with env) in front of it, and
// waits until the edge routes to it.
func authBehindEdge(t *testing.T, env ...string) *stack.Edge {
	t.Helper()
	s := stack.New(t)
	s.Start("auth")
	e := s.StartEdge(env...)
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, _ := mustGet(t, e.URL("/.well-known/jwks.json"))
		return resp.StatusCode == http.StatusOK
	}, "the edge never routed to auth")
	return e
}

// postBurst posts n JSON bodies (body(i)) to path through e one after
// another and counts the answers: a 429 must be rate_limited with
// Retry-After; any other status must satisfy passes.
func postBurst(t *testing.T, e *stack.Edge, path string, n int, body func(i int) string, passes func(status int) bool) (passed, limited int) {
	t.Helper()
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, e.URL(path), strings.NewReader(body(i)))
		req.Header.Set("Content-Type", "application/json")
		resp, answer := fetch(t, req)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			limited++
			if answer.Error.Code != "rate_limited" || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("429 = %+v, Retry-After %q; want rate_limited with Retry-After", answer, resp.Header.Get("Retry-After"))
			}
		case passes(resp.StatusCode):
			passed++
		default:
			t.Fatalf("POST %s %d = %d %+v", path, i+1, resp.StatusCode, answer)
		}
	}
	return passed, limited
}
