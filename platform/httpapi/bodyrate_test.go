package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Slow bodies: 100 bytes/s over 500 ms windows (50 bytes a window).
const (
	testRate   = 100
	testWindow = 500 * time.Millisecond
)

// openRated starts a server with the test's minimum body rate and routes
// that read the body (POST /read) and that wait past a window, then report
// whether the request's context is still alive (/wait).
func openRated(t *testing.T) (string, *testenv.LogBuffer) {
	t.Helper()
	logs := &testenv.LogBuffer{}
	logger, err := logging.New(logs, "debug", "test")
	if err != nil {
		t.Fatal(err)
	}
	s := httpapi.New(httpapi.Options{Name: "test", Host: "127.0.0.1", Logger: logger, MaxBodyBytes: 1 << 20,
		BodyMinRate: testRate, BodyRateWindow: testWindow})
	s.Router().Handle("/read", httpapi.ErrorHandler(logger, func(w http.ResponseWriter, r *http.Request) error {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]int64{"read": n})
		return nil
	})).Methods(http.MethodPost)
	s.Router().HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			httpapi.WriteJSON(w, http.StatusInternalServerError, map[string]string{"ctx": r.Context().Err().Error()})
		case <-time.After(3 * testWindow):
			httpapi.WriteJSON(w, http.StatusOK, map[string]string{"ctx": "alive"})
		}
	})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s.Addr(), logs
}

// drip sends head, then one byte of the body every interval (at most n),
// until the server answers; it returns the answer and when it came.
func drip(t *testing.T, addr, head string, interval time.Duration, n int) (status int, body string, after time.Duration) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Duration(n)*interval + 5*time.Second))
	start := time.Now()
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case a := <-answered:
			if a.err != nil {
				t.Fatalf("no answer after %v: %v", time.Since(start), a.err)
			}
			return a.status, a.body, time.Since(start)
		case <-time.After(interval):
		}
		if _, err := conn.Write([]byte("a")); err != nil {
			break // the server closed: its answer is read below
		}
	}
	select {
	case a := <-answered:
		if a.err != nil {
			t.Fatalf("no answer after %v: %v", time.Since(start), a.err)
		}
		return a.status, a.body, time.Since(start)
	case <-time.After(5 * time.Second):
		t.Fatalf("the server still reads a body dripping 1 byte per %v after %v", interval, time.Since(start))
	}
	return 0, "", 0
}

func TestSlowBodyIsCutOff(t *testing.T) {
	addr, logs := openRated(t)
	// 20 bytes/s, a fifth of the minimum: without a bound it would take 100 s.
	head := "POST /read HTTP/1.1\r\nHost: test\r\nContent-Length: 2000\r\n\r\n"
	status, body, after := drip(t, addr, head, 50*time.Millisecond, 60)
	t.Logf("cut off after %v: %d %s", after.Round(time.Millisecond), status, body)
	if status != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid"`) || !strings.Contains(body, "slower than 100 bytes/s") {
		t.Errorf("dripped body = %d %s, want 400 invalid naming the rate", status, body)
	}
	if after > testWindow+time.Second {
		t.Errorf("cut off after %v, want within about one window (%v)", after, testWindow)
	}
	if !strings.Contains(logs.String(), "request body too slow") {
		t.Errorf("no log line for the cut-off:\n%s", logs.String())
	}

	// A chunked body too.
	head = "POST /read HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n"
	status, body, after = drip(t, addr, head, 50*time.Millisecond, 60)
	if status != http.StatusBadRequest || after > testWindow+time.Second {
		t.Errorf("dripped chunked body = %d %s after %v, want 400 within about a window", status, body, after)
	}
}

func TestSteadyBodyOutlastsTheWindow(t *testing.T) {
	addr, _ := openRated(t)
	// 400 bytes/s for 1.5 s: three windows, each with more than its 50 bytes.
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	const size = 600
	fmt.Fprintf(conn, "POST /read HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", size)
	for range size / 20 {
		if _, err := conn.Write([]byte(strings.Repeat("a", 20))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"read":600`) {
		t.Errorf("steady body = %d %s, want 200 with all 600 bytes", resp.StatusCode, b)
	}
}

// The deadline is the body's only: a request whose body has been read, or
// that has none, may take longer than a window, and the connection serves
// the next request.
func TestBodyRateLeavesTheRestAlone(t *testing.T) {
	addr, _ := openRated(t)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, body := range []string{"", "small body"} {
		for i := range 2 { // the second on the same keep-alive connection
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/wait", strings.NewReader(body))
			if body == "" {
				req.Body = http.NoBody
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "alive") {
				t.Errorf("body %q, request %d: %d %s; want the context alive past the window", body, i, resp.StatusCode, b)
			}
		}
	}
}
