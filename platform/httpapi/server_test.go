package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/testenv"
)

type testServer struct {
	*httpapi.Server
	base string
	logs *testenv.LogBuffer
}

// mustOpen starts a real server on an ephemeral port with a few test routes.
func mustOpen(tb testing.TB, setup func(s *httpapi.Server, logger *slog.Logger)) *testServer {
	tb.Helper()
	return mustOpenLogged(tb, httpapi.Options{MaxBodyBytes: 64}, setup)
}

// mustOpenWith is mustOpen with opts (Name, Host, Port and Logger are set).
func mustOpenWith(tb testing.TB, opts httpapi.Options, setup func(s *httpapi.Server)) *testServer {
	tb.Helper()
	return mustOpenLogged(tb, opts, func(s *httpapi.Server, _ *slog.Logger) { setup(s) })
}

func mustOpenLogged(tb testing.TB, opts httpapi.Options, setup func(s *httpapi.Server, logger *slog.Logger)) *testServer {
	tb.Helper()
	logs := &testenv.LogBuffer{}
	logger, err := logging.New(logs, "debug", "test")
	if err != nil {
		tb.Fatal(err)
	}
	opts.Name, opts.Host, opts.Port, opts.Logger = "test", "127.0.0.1", 0, logger
	s := httpapi.New(opts)
	if setup != nil {
		setup(s, logger)
	}
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &testServer{Server: s, base: "http://" + s.Addr(), logs: logs}
}

func do(tb testing.TB, method, url string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func decodeError(tb testing.TB, b []byte) httpapi.ErrorDetail {
	tb.Helper()
	var body httpapi.ErrorBody
	if err := json.Unmarshal(b, &body); err != nil {
		tb.Fatalf("error body is not JSON: %q", b)
	}
	return body.Error
}

func TestErrorMapping(t *testing.T) {
	codes := map[errs.Code]int{
		errs.Invalid: 400, errs.Unauthorized: 401, errs.Forbidden: 403, errs.NotFound: 404,
		errs.Conflict: 409, errs.TooLarge: 413, errs.Unavailable: 503, errs.Internal: 500,
	}
	ts := mustOpen(t, func(s *httpapi.Server, logger *slog.Logger) {
		s.Router().Handle("/fail/{code}", httpapi.ErrorHandler(logger, func(w http.ResponseWriter, r *http.Request) error {
			code := errs.Code(strings.TrimPrefix(r.URL.Path, "/fail/"))
			if code == "plain" {
				return errors.New("db password=hunter2 leaked in a driver message")
			}
			return errs.Wrap(errors.New("cause"), code, "message for %s", code)
		}))
	})
	for code, status := range codes {
		t.Run(string(code), func(t *testing.T) {
			resp, b := do(t, "GET", ts.base+"/fail/"+string(code), nil, nil)
			if resp.StatusCode != status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, status)
			}
			e := decodeError(t, b)
			if e.Code != code {
				t.Fatalf("code = %q, want %q", e.Code, code)
			}
			if code == errs.Internal && e.Message != "internal error" {
				t.Fatalf("internal message leaked: %q", e.Message)
			}
		})
	}
	t.Run("PlainErrorIsInternal", func(t *testing.T) {
		resp, b := do(t, "GET", ts.base+"/fail/plain", nil, nil)
		e := decodeError(t, b)
		if resp.StatusCode != 500 || e.Code != errs.Internal || strings.Contains(string(b), "hunter2") {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
		if !strings.Contains(ts.logs.String(), "hunter2") {
			t.Fatal("internal cause was not logged")
		}
	})
}

func TestPanicIsA500AndServerLives(t *testing.T) {
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.Router().HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	})
	resp, b := do(t, "GET", ts.base+"/panic", nil, nil)
	if resp.StatusCode != 500 || decodeError(t, b).Code != errs.Internal {
		t.Fatalf("panic answered %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(ts.logs.String(), "boom") {
		t.Fatal("panic not logged")
	}
	resp, _ = do(t, "GET", ts.base+"/healthz", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("server dead after panic: healthz %d", resp.StatusCode)
	}
}

func TestRequestID(t *testing.T) {
	ts := mustOpen(t, nil)
	t.Run("Accepted", func(t *testing.T) {
		resp, _ := do(t, "GET", ts.base+"/healthz", nil, map[string]string{"X-Request-Id": "edge-abc-1"})
		if got := resp.Header.Get("X-Request-Id"); got != "edge-abc-1" {
			t.Fatalf("echoed %q", got)
		}
		if !strings.Contains(ts.logs.String(), `"request_id":"edge-abc-1"`) {
			t.Fatalf("request id not in the access line:\n%s", ts.logs.String())
		}
	})
	t.Run("Generated", func(t *testing.T) {
		resp, _ := do(t, "GET", ts.base+"/healthz", nil, nil)
		if got := resp.Header.Get("X-Request-Id"); len(got) != 32 {
			t.Fatalf("generated %q", got)
		}
	})
	t.Run("ErrUnsafeReplaced", func(t *testing.T) {
		resp, _ := do(t, "GET", ts.base+"/healthz", nil, map[string]string{"X-Request-Id": "bad id\"with quotes"})
		if got := resp.Header.Get("X-Request-Id"); got == "bad id\"with quotes" || len(got) != 32 {
			t.Fatalf("unsafe id kept: %q", got)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	type in struct {
		Name string `json:"name"`
	}
	var bigRoute = func(s *httpapi.Server, logger *slog.Logger) {
		echo := httpapi.ErrorHandler(logger, func(w http.ResponseWriter, r *http.Request) error {
			var v in
			if err := httpapi.DecodeJSON(r, &v); err != nil {
				return err
			}
			httpapi.WriteJSON(w, 200, v)
			return nil
		})
		s.Router().Handle("/echo", echo).Methods("POST")
		s.SetBodyLimit(s.Router().Handle("/big", echo).Methods("POST"), 1<<20)
	}
	ts := mustOpen(t, bigRoute)
	long := `{"name":"` + strings.Repeat("x", 200) + `"}`
	tests := []struct {
		name, path, body string
		chunked          bool
		status           int
		code             errs.Code
	}{
		{"OK", "/echo", `{"name":"a"}`, false, 200, ""},
		{"ErrTooLargeDeclared", "/echo", long, false, 413, errs.TooLarge},
		{"ErrTooLargeStreamed", "/echo", long, true, 413, errs.TooLarge},
		{"RouteOwnLimit", "/big", long, false, 200, ""},
		{"ErrMalformed", "/echo", `{"name":`, false, 400, errs.Invalid},
		{"ErrUnknownField", "/echo", `{"nom":"a"}`, false, 400, errs.Invalid},
		{"ErrEmpty", "/echo", ``, false, 400, errs.Invalid},
		{"ErrTrailing", "/echo", `{"name":"a"}{}`, false, 400, errs.Invalid},
		{"ErrWrongType", "/echo", `{"name":5}`, false, 400, errs.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			resp, b := do(t, "POST", ts.base+tt.path, body, map[string]string{"Content-Type": "application/json"})
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if tt.code != "" && decodeError(t, b).Code != tt.code {
				t.Fatalf("body = %s, want code %s", b, tt.code)
			}
		})
	}
}

func TestUnmatchedRoutesAreJSON(t *testing.T) {
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.Router().HandleFunc("/only-get", func(w http.ResponseWriter, _ *http.Request) {}).Methods("GET")
	})
	resp, b := do(t, "GET", ts.base+"/nope", nil, nil)
	if resp.StatusCode != 404 || decodeError(t, b).Code != errs.NotFound {
		t.Fatalf("404 answered %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "DELETE", ts.base+"/only-get", nil, nil)
	if resp.StatusCode != 405 || decodeError(t, b).Code != errs.Invalid {
		t.Fatalf("405 answered %d %s", resp.StatusCode, b)
	}
}

func TestReadyz(t *testing.T) {
	var mu sync.Mutex
	redisErr := errors.New("dial tcp 127.0.0.1:6379: connection refused")
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.AddCheck(httpapi.Check{Name: "mongodb", Ping: func(context.Context) error { return nil }})
		s.AddCheck(httpapi.Check{Name: "redis", Ping: func(context.Context) error { mu.Lock(); defer mu.Unlock(); return redisErr }})
		s.AddCheck(httpapi.Check{Name: "slow", Ping: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	})
	start := time.Now()
	resp, b := do(t, "GET", ts.base+"/readyz", nil, nil)
	if time.Since(start) > 3*time.Second {
		t.Fatalf("readyz took %s: a hanging check must be bounded", time.Since(start))
	}
	var body httpapi.ReadyBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || body.Error == nil || body.Error.Code != errs.Unavailable {
		t.Fatalf("readyz = %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(body.Error.Message, "redis") || !strings.Contains(body.Error.Message, "slow") || strings.Contains(body.Error.Message, "mongodb") {
		t.Fatalf("message %q must name redis and slow, not mongodb", body.Error.Message)
	}
	if body.Checks["mongodb"] != "ok" || body.Checks["redis"] != "failed" {
		t.Fatalf("checks = %v", body.Checks)
	}
	if strings.Contains(string(b), "connection refused") {
		t.Fatal("readyz leaked the driver error")
	}

	resp, _ = do(t, "GET", ts.base+"/healthz", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("healthz = %d while a dependency is down; it must only say the process lives", resp.StatusCode)
	}
}

// An optional dependency that fails shows as degraded and keeps /readyz 200.
func TestReadyzOptionalCheck(t *testing.T) {
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.AddCheck(httpapi.Check{Name: "mongodb", Ping: func(context.Context) error { return nil }})
		s.AddCheck(httpapi.Check{Name: "rabbitmq", Optional: true, Ping: func(context.Context) error { return errors.New("down") }})
	})
	resp, b := do(t, "GET", ts.base+"/readyz", nil, nil)
	var body httpapi.ReadyBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body.Checks["rabbitmq"] != "degraded" || body.Checks["mongodb"] != "ok" || body.Error != nil {
		t.Fatalf("readyz = %d %s, want 200 with rabbitmq degraded", resp.StatusCode, b)
	}
}

func TestMetrics(t *testing.T) {
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.Router().HandleFunc("/items/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	})
	for _, id := range []string{"1", "2", "3"} {
		do(t, "GET", ts.base+"/items/"+id, nil, nil)
	}
	do(t, "GET", ts.base+"/missing", nil, nil)
	_, b := do(t, "GET", ts.base+"/metrics", nil, nil)
	for _, want := range []string{
		`http_requests_total{method="GET",route="/items/{id}",status="204"} 3`,
		`http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`http_request_duration_seconds_count{method="GET",route="/items/{id}"} 3`,
		`http_requests_in_flight 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestOpenFailsOnTakenPort(t *testing.T) {
	ts := mustOpen(t, nil)
	port := ts.Port()
	s := httpapi.New(httpapi.Options{Name: "dup", Host: "127.0.0.1", Port: port, Logger: slog.New(slog.DiscardHandler)})
	if err := s.Open(); err == nil {
		t.Fatalf("second Open on taken port %d succeeded", port)
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	started := make(chan struct{})
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.Router().HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
			close(started)
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(w, "done")
		})
	})
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(ts.base + "/slow")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-result; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	ts := mustOpen(b, func(s *httpapi.Server, _ *slog.Logger) {
		s.Router().HandleFunc("/items/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(ts.base + "/items/42")
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// TestOnShutdownEndsStreams: a handler that holds its response open (an
// event stream) ends on the signal OnShutdown gives, so Shutdown returns at
// once instead of waiting for its deadline; the stream's bytes arrive as
// they are flushed, through the middleware.
func TestOnShutdownEndsStreams(t *testing.T) {
	stop := make(chan struct{})
	ts := mustOpen(t, func(s *httpapi.Server, _ *slog.Logger) {
		s.OnShutdown(func() { close(stop) })
		s.Router().HandleFunc("/stream", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "first\n")
			_ = http.NewResponseController(w).Flush()
			<-stop
			_, _ = io.WriteString(w, "last\n")
		})
	})
	resp, err := http.Get(ts.base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first flush: %q, %v", buf, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with a stream open", d)
	}
	if rest, _ := io.ReadAll(resp.Body); string(rest) != "last\n" {
		t.Errorf("stream ended with %q", rest)
	}
}
