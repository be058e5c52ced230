package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// Defaults of TokenSourceOptions left zero.
const (
	// DefaultRefreshBefore is how long before its expiry a cached service
	// token is replaced.
	DefaultRefreshBefore = time.Minute
	// DefaultTokenTimeout bounds one token request to auth.
	DefaultTokenTimeout = 10 * time.Second
	// DefaultFailureBackoff is how long a failed token request is remembered,
	// so a down auth is not hammered by every caller.
	DefaultFailureBackoff = time.Second
)

// TokenSourceOptions configure a TokenSource. Set BaseURL or Resolver.
type TokenSourceOptions struct {
	// ClientID and ClientSecret are the service account's credentials
	// (SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET in the services that use one).
	ClientID     string
	ClientSecret string
	// Scope, when set, asks for fewer scopes than the client has
	// (space-separated).
	Scope string
	// BaseURL is auth's address ("http://127.0.0.1:8101"); when empty,
	// auth is found through Resolver under Service.
	BaseURL  string
	Resolver Picker
	// Service is auth's name in Consul (DefaultAuthService when empty).
	Service string
	// RefreshBefore replaces the token this long before it expires (at most
	// half its lifetime). DefaultRefreshBefore when zero.
	RefreshBefore time.Duration
	// HTTPClient sends the requests (one with DefaultTokenTimeout when nil).
	HTTPClient *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// TokenSource obtains a service account's access token from auth with the
// client_credentials grant, caches it and fetches a new one shortly before
// it expires. Concurrent callers share one request to auth. It is safe for
// concurrent use; its Token method fits filestorage/client.Options.Token.
type TokenSource struct {
	opts TokenSourceOptions

	mu       sync.Mutex
	token    string
	refresh  time.Time // when to fetch a new one
	expires  time.Time
	inflight *tokenCall
	failed   error
	failedAt time.Time
}

type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

// NewTokenSource returns a TokenSource for opts; it requests nothing yet.
func NewTokenSource(opts TokenSourceOptions) (*TokenSource, error) {
	switch {
	case opts.ClientID == "" || opts.ClientSecret == "":
		return nil, errors.New("authn: token source: client id and secret are required")
	case opts.BaseURL == "" && opts.Resolver == nil:
		return nil, errors.New("authn: token source: BaseURL or Resolver is required")
	}
	opts.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
	if opts.Service == "" {
		opts.Service = DefaultAuthService
	}
	if opts.RefreshBefore <= 0 {
		opts.RefreshBefore = DefaultRefreshBefore
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DefaultTokenTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &TokenSource{opts: opts}, nil
}

// Token returns a valid access token, from the cache or fresh from auth.
// While the cached token is still valid but due for renewal, a failed
// renewal returns the cached token. Errors are errs.Unavailable (auth
// unreachable or failing) or errs.Unauthorized (credentials refused).
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	now := s.opts.Now()
	s.mu.Lock()
	if s.token != "" && now.Before(s.refresh) {
		tok := s.token
		s.mu.Unlock()
		return tok, nil
	}
	stillValid := s.token != "" && now.Before(s.expires)
	if s.failed != nil && now.Sub(s.failedAt) < DefaultFailureBackoff {
		err, tok := s.failed, s.token
		s.mu.Unlock()
		if stillValid {
			return tok, nil
		}
		return "", err
	}
	call := s.inflight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		s.inflight = call
		// The request outlives a caller that gives up: others may wait on it.
		go s.fetch(context.WithoutCancel(ctx), call)
	}
	s.mu.Unlock()

	select {
	case <-call.done:
	case <-ctx.Done():
		return "", errs.Wrap(ctx.Err(), errs.Unavailable, "service token: auth did not answer in time")
	}
	if call.err != nil {
		s.mu.Lock()
		tok, valid := s.token, s.token != "" && s.opts.Now().Before(s.expires)
		s.mu.Unlock()
		if valid {
			return tok, nil
		}
		return "", call.err
	}
	return call.token, nil
}

// Invalidate drops the cached token (after a service answered 401 to it,
// e.g. because auth's keys were replaced); the next Token fetches a new one.
func (s *TokenSource) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token, s.refresh, s.expires = "", time.Time{}, time.Time{}
}

func (s *TokenSource) fetch(ctx context.Context, call *tokenCall) {
	start := s.opts.Now()
	tok, ttl, err := s.request(ctx)
	s.mu.Lock()
	if err != nil {
		s.failed, s.failedAt = err, s.opts.Now()
	} else {
		s.failed = nil
		s.token = tok
		s.expires = start.Add(ttl)
		before := min(s.opts.RefreshBefore, ttl/2)
		s.refresh = s.expires.Add(-before)
	}
	s.inflight = nil
	s.mu.Unlock()
	call.token, call.err = tok, err
	close(call.done)
}

// tokenResponse is the part of auth's answer to POST /v1/token we use.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (s *TokenSource) request(ctx context.Context) (string, time.Duration, error) {
	base := s.opts.BaseURL
	if base == "" {
		inst, err := s.opts.Resolver.Pick(ctx, s.opts.Service)
		if err != nil {
			return "", 0, errs.Wrap(err, errs.Unavailable, "service token: auth is unavailable")
		}
		base = inst.BaseURL()
	}
	form := url.Values{"grant_type": {"client_credentials"},
		"client_id": {s.opts.ClientID}, "client_secret": {s.opts.ClientSecret}}
	if s.opts.Scope != "" {
		form.Set("scope", s.opts.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("service token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return "", 0, errs.Wrap(err, errs.Unavailable, "service token: auth is unavailable")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", 0, errs.Wrap(err, errs.Unavailable, "service token: reading auth's answer")
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", 0, errs.Wrap(fmt.Errorf("auth answered %d: %s", resp.StatusCode, truncateBody(body)),
			errs.Unauthorized, "service token: client %s refused by auth", s.opts.ClientID)
	case resp.StatusCode != http.StatusOK:
		return "", 0, errs.Wrap(fmt.Errorf("auth answered %d: %s", resp.StatusCode, truncateBody(body)),
			errs.Unavailable, "service token: auth is unavailable")
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return "", 0, errs.Wrap(fmt.Errorf("decode token response: %v", err), errs.Unavailable,
			"service token: auth answered without a token")
	}
	return tr.AccessToken, time.Duration(tr.ExpiresIn) * time.Second, nil
}

func truncateBody(b []byte) string {
	const limit = 256
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}
