// Package authcall sends a user's request on to auth from the gateway's own
// handlers (the web page's session routes, the seed clients' /login): the
// client's address (X-Real-IP, which auth's login limits key on) and request
// id go along, auth's answer comes back whole (bounded), and a refusal of
// auth's is passed to the client as auth gave it.
package authcall

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// maxAnswer bounds what is read of an answer of auth's.
const maxAnswer = 64 << 10

// Caller calls auth.
type Caller struct {
	base func(ctx context.Context) (string, error)
	http *http.Client
}

// New returns a Caller of the auth whose base URL ("http://host:port") base
// returns, with a 15 s timeout per call.
func New(base func(ctx context.Context) (string, error)) Caller {
	return Caller{base: base, http: &http.Client{Timeout: 15 * time.Second}}
}

// Answer is auth's answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Call sends method path to auth on behalf of the client of r, with body
// (JSON; nil: none) and authorization as its Authorization header ("":
// none). Auth out of reach is errs.Unavailable.
func (c Caller) Call(r *http.Request, method, path string, body []byte, authorization string) (Answer, error) {
	base, err := c.base(r.Context())
	if err != nil {
		return Answer{}, errs.Wrap(err, errs.Unavailable, "auth is unavailable")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return Answer{}, errs.Wrap(err, errs.Internal, "auth request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	req.Header.Set("X-Real-IP", httpapi.ClientIP(r))
	if id := r.Header.Get(httpapi.RequestIDHeader); id != "" {
		req.Header.Set(httpapi.RequestIDHeader, id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, errs.Wrap(err, errs.Unavailable, "auth is unavailable")
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return Answer{}, errs.Wrap(err, errs.Unavailable, "auth is unavailable")
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: answer}, nil
}

// Relay writes a as the client's answer: auth's own refusal (401, 429 with
// Retry-After, …) as auth gave it.
func (a Answer) Relay(w http.ResponseWriter) {
	for _, name := range []string{"Content-Type", "Retry-After", "WWW-Authenticate"} {
		if v := a.Header.Get(name); v != "" {
			w.Header().Set(name, v)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}
