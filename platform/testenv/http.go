package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// Response is an HTTP answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v; a body that is not JSON fails tb.
func (r Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("body is not JSON: %v: %q", err, r.Body)
	}
}

// ErrorCode returns the code of a JSON error body
// ({"error":{"code":"…","message":"…"}}), "" when there is none.
func (r Response) ErrorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Do sends req with a client of its own (timeout one minute) and reads the
// whole answer; a failed request fails tb.
func Do(tb testing.TB, req *http.Request) Response {
	tb.Helper()
	return DoWith(tb, &http.Client{Timeout: 60 * time.Second}, req)
}

// DoWith is Do with client.
func DoWith(tb testing.TB, client *http.Client, req *http.Request) Response {
	tb.Helper()
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// NewRequest builds a request with an optional body, content type and
// bearer token; an invalid one fails tb.
func NewRequest(tb testing.TB, method, url string, body io.Reader, contentType, token string) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}
