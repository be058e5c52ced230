package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

type authTargetKey struct{}

// authProxy forwards the account routes (/api/v1/users, token, refresh,
// logout) to auth's /v1/…, for clients that reach the gateway directly (the
// edge sends them to auth itself). The client address auth rate-limits on
// goes as X-Real-IP: httpapi.ClientIP, the peer's, or the client a trusted
// proxy (TRUSTED_PROXIES) names.
func (a *API) authProxy() http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := pr.In.Context().Value(authTargetKey{}).(*url.URL)
			pr.SetURL(target)
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/api")
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Set("X-Real-IP", httpapi.ClientIP(pr.In))
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			httpapi.WriteError(w, r, a.opts.Logger, errs.Wrap(err, errs.Unavailable, "auth is unavailable"))
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, err := a.opts.Auth(r.Context())
		if err != nil {
			httpapi.WriteError(w, r, a.opts.Logger, errs.Wrap(err, errs.Unavailable, "auth is unavailable"))
			return
		}
		target, err := url.Parse(base)
		if err != nil {
			httpapi.WriteError(w, r, a.opts.Logger, err)
			return
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authTargetKey{}, target)))
	})
}

// seedLogin is POST /login with HTTP Basic: auth checks the password, and
// the answer is the bare access token as text/plain, as the seed's was.
func (a *API) seedLogin(w http.ResponseWriter, r *http.Request) error {
	if _, _, ok := r.BasicAuth(); !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="audiomill"`)
		return errs.E(errs.Unauthorized, "missing credentials")
	}
	answer, err := a.auth.Call(r, http.MethodPost, "/v1/token", nil, r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	if answer.Status != http.StatusOK {
		// auth's own error (401, 429 with Retry-After, …) goes back as it is.
		answer.Relay(w)
		return nil
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(answer.Body, &tok); err != nil || tok.AccessToken == "" {
		return errs.Wrap(err, errs.Unavailable, "auth answered without a token")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, tok.AccessToken)
	return nil
}
