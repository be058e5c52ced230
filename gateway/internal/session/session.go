// Package session is the web page's session at the gateway: a login that
// keeps auth's refresh token in an HttpOnly cookie the page's scripts cannot
// read, the refresh that rotates it, and the logout that ends it
// (docs/gateway.md "The web page's session", docs/security.md "The web page").
//
//	POST   /api/v1/session          {"email","password"} → 200 {access_token, expires_in, email, email_verified} + the cookie
//	POST   /api/v1/session/refresh  the cookie + X-Audiomill-CSRF: 1 → 200 a new access token + the rotated cookie
//	DELETE /api/v1/session          the cookie + X-Audiomill-CSRF: 1 (?all=true: every session) → 204, the cookie cleared
//
// Each wraps auth's POST /v1/token, /v1/token/refresh and /v1/logout; the
// refresh token never appears in a body the page sees.
package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/gateway/internal/authcall"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// The cookie and the CSRF header.
const (
	CookieName = "audiomill_refresh"
	CookiePath = "/api/v1/session"
	CSRFHeader = "X-Audiomill-CSRF"
	// DefaultMaxAge is the cookie's lifetime: auth's SESSION_MAX_AGE
	// default, past which a refresh token is refused anyway.
	DefaultMaxAge = 30 * 24 * time.Hour
	// maxBody bounds a login's JSON body.
	maxBody = 8 << 10
)

// BodyLimiter gives a route its own request body limit (httpapi.Server).
type BodyLimiter interface {
	SetBodyLimit(route *mux.Route, limit int64)
}

// Options configure the session routes.
type Options struct {
	// Auth returns auth's base URL ("http://host:port").
	Auth func(ctx context.Context) (string, error)
	// MaxAge is the cookie's Max-Age (DefaultMaxAge when zero).
	MaxAge time.Duration
	Logger *slog.Logger
}

// Handler serves the session routes.
type Handler struct {
	opts Options
	auth authcall.Caller
}

// Register adds the session routes to r.
func Register(r *mux.Router, bl BodyLimiter, opts Options) *Handler {
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	h := &Handler{opts: opts, auth: authcall.New(opts.Auth)}
	login := r.Handle("/api/v1/session", httpapi.ErrorHandler(opts.Logger, h.login)).Methods(http.MethodPost)
	bl.SetBodyLimit(login, maxBody)
	refresh := r.Handle("/api/v1/session/refresh", httpapi.ErrorHandler(opts.Logger, h.refresh)).Methods(http.MethodPost)
	bl.SetBodyLimit(refresh, maxBody)
	r.Handle("/api/v1/session", httpapi.ErrorHandler(opts.Logger, h.logout)).Methods(http.MethodDelete)
	return h
}

// View is the body of a login and of a refresh: no refresh token.
type View struct {
	AccessToken   string `json:"access_token"`
	TokenType     string `json:"token_type"`
	ExpiresIn     int64  `json:"expires_in"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
}

// tokens is auth's answer to /v1/token and /v1/token/refresh.
type tokens struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// login is POST /api/v1/session.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	// A login from another site would sign the victim's browser into the
	// attacker's account: refused like a cross-site refresh, though the page
	// needs no header for it.
	if err := sameOrigin(r); err != nil {
		return err
	}
	var creds struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := httpapi.DecodeJSON(r, &creds); err != nil {
		return err
	}
	if creds.Email == "" || creds.Password == "" {
		return errs.E(errs.Invalid, "email and password are required")
	}
	body, _ := json.Marshal(creds)
	return h.issue(w, r, "/v1/token", body, false)
}

// refresh is POST /api/v1/session/refresh.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) error {
	if err := checkCSRF(r); err != nil {
		return err
	}
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return errs.E(errs.Unauthorized, "no session: log in")
	}
	body, _ := json.Marshal(map[string]string{"refresh_token": c.Value})
	return h.issue(w, r, "/v1/token/refresh", body, true)
}

// issue asks auth for tokens at path and answers the page's view of them,
// the refresh token going into the cookie. clearOnRefusal: auth refusing
// (the cookie's token spent, revoked or too old) clears the cookie.
func (h *Handler) issue(w http.ResponseWriter, r *http.Request, path string, body []byte, clearOnRefusal bool) error {
	a, err := h.auth.Call(r, http.MethodPost, path, body, "")
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		if clearOnRefusal && a.Status == http.StatusUnauthorized {
			h.clearCookie(w)
		}
		a.Relay(w)
		return nil
	}
	var t tokens
	if err := json.Unmarshal(a.Body, &t); err != nil || t.AccessToken == "" || t.RefreshToken == "" {
		return errs.Wrap(err, errs.Unavailable, "auth answered without tokens")
	}
	// The token comes straight from auth over the gateway's own connection:
	// its claims are read, not verified again.
	claims := readClaims(t.AccessToken)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: t.RefreshToken, Path: CookiePath,
		MaxAge: int(h.opts.MaxAge / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, View{AccessToken: t.AccessToken, TokenType: "Bearer", ExpiresIn: t.ExpiresIn,
		Email: claims.Email, EmailVerified: claims.EmailVerified != nil && *claims.EmailVerified})
	return nil
}

// logout is DELETE /api/v1/session[?all=true]: auth ends the session (or
// every session of the user) of the cookie's refresh token and of the
// bearer token, when one is sent; the cookie is cleared whatever auth says.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	if err := checkCSRF(r); err != nil {
		return err
	}
	path := "/v1/logout"
	if v, ok := r.URL.Query()["all"]; ok {
		all, err := strconv.ParseBool(strings.Join(v, ","))
		if err != nil || len(v) != 1 {
			return errs.E(errs.Invalid, "all must be true or false")
		}
		if all {
			path += "?all=true"
		}
	}
	c, _ := r.Cookie(CookieName)
	bearer := r.Header.Get("Authorization")
	if (c == nil || c.Value == "") && bearer == "" {
		h.clearCookie(w)
		return errs.E(errs.Unauthorized, "no session: nothing to log out")
	}
	var body []byte
	if c != nil && c.Value != "" {
		body, _ = json.Marshal(map[string]string{"refresh_token": c.Value})
	}
	a, err := h.auth.Call(r, http.MethodPost, path, body, bearer)
	if err != nil {
		return err
	}
	h.clearCookie(w)
	if a.Status != http.StatusNoContent {
		a.Relay(w)
		return nil
	}
	h.opts.Logger.InfoContext(r.Context(), "session ended", "all", strings.HasSuffix(path, "true"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: CookiePath, MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// claims are what the page shows of an access token.
type claims struct {
	Email         string `json:"email"`
	EmailVerified *bool  `json:"email_verified"`
}

func readClaims(token string) claims {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
		_ = json.Unmarshal(b, &c)
	}
	return c
}

// checkCSRF: a refresh or logout must say it comes from the page's own
// script (a custom header, which no form and no cross-site request without a
// CORS preflight can send, and the gateway answers no preflight) and, when
// the browser names the origin, from this origin.
func checkCSRF(r *http.Request) error {
	if r.Header.Get(CSRFHeader) != "1" {
		return errs.E(errs.Forbidden, "the %s header is required", CSRFHeader)
	}
	return sameOrigin(r)
}

// sameOrigin refuses a request whose Origin is another site's, or which
// the browser marks as not same-origin (Sec-Fetch-Site).
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return errs.E(errs.Forbidden, "cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return errs.E(errs.Forbidden, "cross-origin request refused")
	}
	return nil
}
