package e2e_test

// The edge's hardening (docs/architecture.md, "The edge"): no service
// internals, JSON errors with a code for everything nginx answers itself,
// security headers on every answer, per-client limits and body bounds, TLS,
// and instances from Consul rendered only when their values are safe.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
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

// exchange writes raw to 127.0.0.1:port and reads one response; nil when
// the edge closed the connection without one.
func exchange(t *testing.T, port int, raw string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Logf("no answer to %.60q: %v", raw, err)
		return nil, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// edgeGet is a plain GET of path through the edge, on a connection of its own.
func edgeGet(t *testing.T, e *stack.Edge, path string) (*http.Response, string) {
	t.Helper()
	return exchange(t, e.Port, "GET "+path+" HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
}

// checkSecurityHeaders: what every answer of the edge carries.
func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for name, want := range map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "frame-ancestors 'none'",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s = %q, want exactly %q", what, name, got, want)
		}
	}
	if got := h.Values("X-Request-Id"); len(got) != 1 || got[0] == "" {
		t.Errorf("%s: X-Request-Id = %q, want one", what, got)
	}
}

// checkJSONError: resp is the edge's own JSON error with status and code.
func checkJSONError(t *testing.T, what string, resp *http.Response, body string, status int, code string) {
	t.Helper()
	if resp == nil {
		t.Errorf("%s: the edge closed the connection without an answer; want %d %s", what, status, code)
		return
	}
	var e apiError
	if resp.StatusCode != status || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("%s = %d %q, want %d JSON with code %q", what, resp.StatusCode, body, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("%s: HTML body %q", what, body)
	}
	checkSecurityHeaders(t, what, resp.Header)
}

// fakeService serves h on loopback and registers it in Consul as an
// instance of service under the stack's tag; it returns its address.
func fakeService(t *testing.T, s *stack.Stack, service string, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().(*net.TCPAddr)
	s.Register(service, fmt.Sprintf("%s-%s-fake-%d", service, s.Tag, addr.Port), "127.0.0.1", addr.Port)
	return addr.String()
}

func routed(t *testing.T, e *stack.Edge, addrs ...string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() bool {
		return !slices.ContainsFunc(addrs, func(a string) bool { return !inUpstream(e, a) })
	}, "the edge never routed to %v:\n%s", addrs, e.Config())
}

func TestEdgeHidesServiceInternals(t *testing.T) {
	s := stack.New(t)
	internal := func(p string) bool {
		return slices.Contains([]string{"/metrics", "/readyz", "/healthz"}, path.Clean(p))
	}
	var mu sync.Mutex
	var reached []string
	// An instance with the services' own endpoints: anything else is a 404 JSON.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.URL.Path)
		mu.Unlock()
		if internal(r.URL.Path) {
			_, _ = io.WriteString(w, "go_goroutines 7\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"the instance's own"}}`+"\n")
	})
	fs := fakeService(t, s, "filestorage", h)
	gw := fakeService(t, s, "gateway", h)
	e := s.StartEdge()
	routed(t, e, fs, gw)

	for _, p := range []string{
		"/storage/metrics", "/storage/readyz", "/storage/healthz", "/storage//metrics", "/storage/./metrics",
		"/storage/%6detrics", "/storage/v1/../metrics", "/storage/v1/..%2freadyz", "/storage/v1/%2e%2e/healthz",
		"/storage/metrics/", "/storage/metrics?format=text", "/storage/%2fmetrics",
		"/api/metrics", "/api/readyz", "/api//healthz", "/api/v1/../metrics", "/api/../metrics",
		"/api/v1/%2e%2e/%2e%2e/readyz", "/metrics", "/readyz", "//metrics",
	} {
		resp, body := edgeGet(t, e, p)
		checkJSONError(t, "GET "+p, resp, body, http.StatusNotFound, "not_found")
		if strings.Contains(body, "go_goroutines") {
			t.Errorf("GET %s exposed an instance's internals: %q", p, body)
		}
	}
	mu.Lock()
	for _, p := range reached {
		if internal(p) {
			t.Errorf("the edge passed %s on to an instance", p)
		}
	}
	mu.Unlock()

	// The routes still reach their instances, whose errors pass unchanged.
	resp, body := edgeGet(t, e, "/storage/v1/buckets/videos/files/metrics")
	if resp == nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "the instance's own") {
		t.Errorf("a file named metrics = %v %q, want the instance's 404", resp, body)
	}
}

func TestEdgeOwnErrorsAreJSON(t *testing.T) {
	s := stack.New(t)
	e := s.StartEdge() // no instance: every route's fallback, and nginx's own errors
	huge := strings.Repeat("a", 20<<10)
	for _, tc := range []struct {
		name, raw string
		status    int
		code      string
		echoID    bool // the request's X-Request-Id comes back
	}{
		{"HeaderTooLarge", "GET /api/v1/jobs HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer " + huge + "\r\nConnection: close\r\n\r\n", 431, "too_large", false},
		{"URITooLong", "GET /" + huge + " HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n", 414, "too_large", false},
		{"BadRequestLine", "GARBAGE\r\n\r\n", 400, "invalid", false},
		{"NoHost", "GET /api/v1/jobs HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "invalid", false},
		{"BadVersion", "GET / HTTP/2.5\r\nHost: edge\r\nConnection: close\r\n\r\n", 505, "invalid", false},
		{"TRACE", "TRACE / HTTP/1.1\r\nHost: edge\r\nX-Request-Id: req-h17-trace\r\nConnection: close\r\n\r\n", 405, "invalid", true},
		{"UnknownTransferEncoding", "POST /api/v1/videos HTTP/1.1\r\nHost: edge\r\nX-Request-Id: req-h17-te\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n", 501, "invalid", true},
		{"BodyTooLarge", "POST " + probePath + " HTTP/1.1\r\nHost: edge\r\nX-Request-Id: req-h17-413\r\nContent-Length: 3221225472\r\nConnection: close\r\n\r\n", 413, "too_large", true},
		{"NoRoute", "GET /no/such/route HTTP/1.1\r\nHost: edge\r\nX-Request-Id: req-h17-404\r\nConnection: close\r\n\r\n", 404, "not_found", true},
		{"ErrorPageFromOutside", "GET /.edge/error/500 HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n", 404, "not_found", false},
		{"NoInstance", "GET /api/v1/jobs HTTP/1.1\r\nHost: edge\r\nX-Request-Id: req-h17-503\r\nConnection: close\r\n\r\n", 503, "unavailable", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := exchange(t, e.Port, tc.raw)
			checkJSONError(t, tc.name, resp, body, tc.status, tc.code)
			if resp == nil || !tc.echoID {
				return
			}
			if want := regexp.MustCompile(`X-Request-Id: (\S+)`).FindStringSubmatch(tc.raw)[1]; resp.Header.Get("X-Request-Id") != want {
				t.Errorf("X-Request-Id = %q, want the request's %q", resp.Header.Get("X-Request-Id"), want)
			}
		})
	}
}

func TestEdgeUpstreamAnswersAndFailures(t *testing.T) {
	s := stack.New(t)
	gw := fakeService(t, s, "gateway", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN") // the edge's DENY replaces it
		switch r.URL.Path {
		case "/api/v1/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, `{"late":true}`)
		case "/api/v1/fail":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":{"code":"internal","message":"the instance's own 500"}}`+"\n")
		case "/api/v1/busy":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"the instance's own 503"}}`+"\n")
		default:
			_, _ = io.WriteString(w, `{"ok":true}`+"\n")
		}
	}))
	// A filestorage that is gone: registered, nothing listening.
	s.Register("filestorage", "filestorage-"+s.Tag+"-dead", "127.0.0.1", testenv.FreePort(t))
	e := s.StartEdge("EDGE_UPSTREAM_TIMEOUT=1s")
	routed(t, e, gw)

	resp, body := edgeGet(t, e, "/api/v1/ok")
	if resp == nil || resp.StatusCode != http.StatusOK || body != `{"ok":true}`+"\n" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("GET /api/v1/ok = %v %q, want the instance's answer", resp, body)
	}
	checkSecurityHeaders(t, "a proxied 200", resp.Header)

	// The instances' own errors pass as they are (with the edge's headers).
	for p, status := range map[string]int{"/api/v1/fail": 500, "/api/v1/busy": 503} {
		resp, body := edgeGet(t, e, p)
		if resp == nil || resp.StatusCode != status || !strings.Contains(body, "the instance's own") || resp.Header.Get("X-Upstream") != "yes" {
			t.Errorf("GET %s = %v %q, want the instance's own %d unchanged", p, resp, body, status)
			continue
		}
		checkSecurityHeaders(t, "GET "+p, resp.Header)
	}

	start := time.Now()
	resp, body = edgeGet(t, e, "/api/v1/slow")
	checkJSONError(t, "an instance slower than EDGE_UPSTREAM_TIMEOUT", resp, body, http.StatusGatewayTimeout, "unavailable")
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("504 after %v, want about 1s", d)
	}
	resp, body = edgeGet(t, e, "/storage/v1/buckets")
	checkJSONError(t, "an instance that is gone", resp, body, http.StatusBadGateway, "unavailable")
}

func TestEdgeLimitsRequestsInProgressPerClient(t *testing.T) {
	s := stack.New(t)
	release := make(chan struct{})
	var holding atomic.Int32
	gw := fakeService(t, s, "gateway", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/hold" {
			holding.Add(1)
			defer holding.Add(-1)
			select {
			case <-release:
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`+"\n")
	}))
	e := s.StartEdge("EDGE_CONN_PER_CLIENT=2")
	routed(t, e, gw)

	var wg sync.WaitGroup
	hold := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 2 {
		wg.Go(func() {
			if resp, err := hold.Get(e.URL("/api/v1/hold")); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return holding.Load() == 2 }, "the two requests never reached the instance")
	resp, body := edgeGet(t, e, "/api/v1/ok")
	checkJSONError(t, "a third request in progress", resp, body, http.StatusTooManyRequests, "rate_limited")
	if resp != nil && resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	close(release)
	wg.Wait()
	if resp, body := edgeGet(t, e, "/api/v1/ok"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Errorf("after the two ended: %v %q, want 200", resp, body)
	}
}

func TestEdgeClosesABodyThatStops(t *testing.T) {
	s := stack.New(t)
	gw := fakeService(t, s, "gateway", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	e := s.StartEdge("EDGE_BODY_TIMEOUT=1s", "EDGE_HEADER_TIMEOUT=1s")
	routed(t, e, gw)

	for name, raw := range map[string]string{
		"body":    "POST /api/v1/videos HTTP/1.1\r\nHost: edge\r\nContent-Length: 1000\r\n\r\n0123456789",
		"headers": "POST /api/v1/videos HTTP/1.1\r\nHost: edge\r\n",
	} {
		start := time.Now()
		resp, body := exchange(t, e.Port, raw)
		took := time.Since(start)
		t.Logf("%s stopped: answer %v %q after %v", name, resp != nil, body, took.Round(10*time.Millisecond))
		if took > 4*time.Second {
			t.Errorf("%s stopped: the edge waited %v, want about 1s", name, took)
		}
		// nginx closes a timed-out client without an answer (408 is only
		// logged); any answer would be JSON.
		if resp != nil {
			checkJSONError(t, name+" stopped", resp, body, http.StatusRequestTimeout, "invalid")
		}
	}
}

func TestEdgeCutsOffASlowDripBody(t *testing.T) {
	s := stack.New(t)
	// auth bounds its bodies to 1 KiB/s over 2 s windows (BODY_MIN_RATE,
	// docs/architecture.md, "The edge"); the edge's between-bytes timeout
	// (60 s) never fires for a byte every 250 ms.
	s.Start("auth", "BODY_MIN_RATE=1024", "BODY_RATE_WINDOW=2s")
	e := s.StartEdge()
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, _ := edgeGet(t, e, "/.well-known/jwks.json")
		return resp != nil && resp.StatusCode == http.StatusOK
	}, "the edge never routed to auth")

	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(e.Port), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	type answer struct {
		resp *http.Response
		body string
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- answer{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- answer{resp, string(b)}
	}()
	start := time.Now()
	fmt.Fprintf(conn, "POST /api/v1/users HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"email\":\"")
	var a answer
	got := false
	for i := 0; i < 60 && !got; i++ { // at most 15 s of drip
		select {
		case a = <-answered:
			got = true
		case <-time.After(250 * time.Millisecond):
			_, _ = conn.Write([]byte("a"))
		}
	}
	took := time.Since(start)
	if !got {
		t.Fatalf("a body dripping 1 byte per 250 ms still holds its request after %v", took)
	}
	t.Logf("slow drip cut off after %v", took.Round(10*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("cut off after %v, want within about one window (2s)", took)
	}
	checkJSONError(t, "a slow drip", a.resp, a.body, http.StatusBadRequest, "invalid")
}

func TestEdgeTLS(t *testing.T) {
	s := stack.New(t)
	gw := fakeService(t, s, "gateway", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"proto":%q,"forwarded_proto":%q}`+"\n", r.Proto, r.Header.Get("X-Forwarded-Proto"))
	}))
	certFile, keyFile, pool := testenv.SelfSignedCert(t, t.TempDir())
	tlsPort := testenv.FreePort(t)
	e := s.StartEdge("EDGE_TLS_CERT="+certFile, "EDGE_TLS_KEY="+keyFile, "EDGE_TLS_PORT="+strconv.Itoa(tlsPort))
	routed(t, e, gw)
	httpsURL := func(p string) string { return "https://127.0.0.1:" + strconv.Itoa(tlsPort) + p }

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get(httpsURL("/api/v1/jobs"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"forwarded_proto":"https"`) {
		t.Errorf("HTTPS GET = %d %s, want the instance's answer with X-Forwarded-Proto https", resp.StatusCode, b)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTPS answered over %s, want HTTP/2", resp.Proto)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
		t.Errorf("HTTPS answer without HSTS (%q)", hsts)
	}
	checkSecurityHeaders(t, "HTTPS GET", resp.Header)

	// The edge's own errors over HTTPS carry HSTS too.
	resp, err = client.Get(httpsURL("/no/such/route"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	checkJSONError(t, "HTTPS unknown route", resp, string(b), http.StatusNotFound, "not_found")
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("HTTPS 404 without HSTS")
	}

	// Plain HTTP redirects there, keeping the method (308); /healthz stays.
	for _, method := range []string{"GET", "POST"} {
		resp, body := exchange(t, e.Port, method+" /api/v1/jobs?page=2 HTTP/1.1\r\nHost: 127.0.0.1:"+strconv.Itoa(e.Port)+
			"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		if resp == nil || resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != httpsURL("/api/v1/jobs?page=2") {
			t.Errorf("HTTP %s = %v, want 308 to %s", method, resp, httpsURL("/api/v1/jobs?page=2"))
			continue
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("HTTP %s: HSTS over plain HTTP", method)
		}
		if resp.Header.Get("Content-Type") != "application/json" || !json.Valid([]byte(body)) {
			t.Errorf("HTTP %s: 308 with %s body %q, want JSON", method, resp.Header.Get("Content-Type"), body)
		}
		checkSecurityHeaders(t, "HTTP "+method, resp.Header)
	}
	if resp, body := edgeGet(t, e, "/healthz"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP /healthz = %v %q, want 200", resp, body)
	}
	resp, body := exchange(t, tlsPort, "GET /api/v1/jobs HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
	checkJSONError(t, "plain HTTP to the HTTPS port", resp, body, http.StatusBadRequest, "invalid")
}

func TestEdgeTLSNeedsCertificateAndKey(t *testing.T) {
	root := repoRoot(t)
	certFile, _, _ := testenv.SelfSignedCert(t, t.TempDir())
	for name, env := range map[string][]string{
		"EDGE_TLS_KEY":  {"EDGE_TLS_CERT=" + certFile},
		"EDGE_TLS_CERT": {"EDGE_TLS_CERT=/nonexistent/edge.crt", "EDGE_TLS_KEY=" + certFile},
	} {
		cmd := exec.Command(filepath.Join(root, "scripts", "edge.sh"), "start")
		cmd.Env = append(os.Environ(), "AUDIOMILL_VAR_DIR="+filepath.Join(t.TempDir(), "var"),
			"EDGE_PORT="+strconv.Itoa(testenv.FreePort(t)))
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), name) {
			t.Errorf("scripts/edge.sh start with %v: %v, want a failure naming %s:\n%s", env, err, name, out)
		}
	}
}

func TestEdgeRendersConsulValuesSafely(t *testing.T) {
	s := stack.New(t)
	gw := fakeService(t, s, "gateway", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"instance":"good"}`+"\n")
	}))
	_, gwPort, _ := net.SplitHostPort(gw)
	port, _ := strconv.Atoi(gwPort)
	byAddress, byID, later := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	// Each would give the edge a listener of its own answering "pwned", in
	// a config that passes nginx -t, were it rendered as it is.
	inject := func(p int) string {
		return fmt.Sprintf("} server { listen 127.0.0.1:%d; location / { return 200 pwned; } } upstream pwned%d {", p, p)
	}
	s.Register("gateway", "gateway-"+s.Tag+"-by-address", "127.0.0.1:1 max_fails=0; "+inject(byAddress)+" server 127.0.0.1", 1234)
	s.Register("gateway", "gateway-"+s.Tag+"-by-id\n"+inject(byID)+"\n#", "127.0.0.1", port)
	s.Register("auth", "auth-"+s.Tag+"-hostname", "auth.invalid", 8101)
	s.Register("filestorage", "filestorage-"+s.Tag+"-v6", "::1", 8102)
	e := s.StartEdge() // scripts/edge.sh: the rendered config passed nginx -t
	routed(t, e, gw)

	check := func(when string) {
		t.Helper()
		conf := e.Config()
		if strings.Contains(conf, "return 200 pwned") || strings.Contains(conf, "upstream pwned") {
			t.Errorf("%s: a value from Consul injected directives:\n%s", when, conf)
		}
		for _, p := range []int{byAddress, byID, later} {
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), time.Second); err == nil {
				c.Close()
				t.Errorf("%s: something listens on %d, the port an injected server would", when, p)
			}
		}
		for range 4 {
			if resp, body := edgeGet(t, e, probePath); resp == nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, "good") {
				t.Errorf("%s: GET %s = %v %q, want the good instance", when, probePath, resp, body)
			}
		}
		// A path no location routes (/ is the web page's, the gateway's).
		resp, body := edgeGet(t, e, "/nope")
		checkJSONError(t, when+": GET /nope", resp, body, http.StatusNotFound, "not_found")
		// auth's only instance has a host name: auth gets the fallback.
		resp, body = edgeGet(t, e, "/api/v1/users")
		checkJSONError(t, when+": auth with no usable instance", resp, body, http.StatusServiceUnavailable, "unavailable")
		if !strings.Contains(conf, fmt.Sprintf("server [::1]:%d ", 8102)) {
			t.Errorf("%s: the IPv6 instance is not rendered as [::1]:8102:\n%s", when, conf)
		}
	}
	check("at start")

	// One more arrives while the edge runs: consul-template re-renders, the
	// reload's nginx -t passes, and the value is as inert.
	s.Register("filestorage", "filestorage-"+s.Tag+"-later", "127.0.0.1 "+inject(later), 8102)
	testenv.Eventually(t, 10*time.Second, func() bool { return strings.Contains(e.Config(), "-later: its address") },
		"the edge never re-rendered after the last registration:\n%s", e.Config())
	check("after a re-render")
	if log := e.TemplateLog(); strings.Contains(log, "rejected") {
		t.Errorf("a rendered config failed nginx -t:\n%s", log)
	}
}
