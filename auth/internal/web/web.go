// Package web is auth's HTTP API: sign-up and email verification, tokens (password and client
// credentials), refresh, logout, validation, the JWKS and key rotation.
//
//	POST /v1/users              {"email","password"} → 202 the same neutral answer whether or not the address has an account
//	GET  /v1/verify?token=      the link of the verification email → 200 (once, until it expires)
//	POST /v1/users/verify/resend Bearer (user) → 202 a new verification email; 429 + Retry-After when asked too often
//	POST /v1/token              JSON {"email","password"}, form, or HTTP Basic → access + refresh token;
//	                            grant_type=client_credentials with client_id/client_secret (or Basic) → service token
//	POST /v1/token/refresh      {"refresh_token"} → new access + refresh token (the old one is spent)
//	POST /v1/logout             Bearer access token and/or {"refresh_token"} → 204; revokes the family and the jti
//	POST /v1/validate           Bearer token or {"token"} → 200 the claims, or 401
//	POST /v1/keys/rotate        admin only → 200 the new current key id
//	PUT    /v1/users/{id}/roles/storage  admin only → 200 the account, with the role storage (idempotent)
//	DELETE /v1/users/{id}/roles/storage  admin only → 200 the account, without it (idempotent); 404 for an unknown account
//	GET  /.well-known/jwks.json the current and previous public keys
package web

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/auth/internal/clients"
	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/auth/internal/ratelimit"
	"github.com/audiomill/audiomill/auth/internal/tokens"
	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/auth/internal/verify"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/httpapi"
	limits "github.com/audiomill/audiomill/platform/ratelimit"
)

// MaxBodyBytes is the body limit of auth's routes: credentials are small.
const MaxBodyBytes = 16 << 10

// Deps are what the handlers use.
type Deps struct {
	Users     *users.Store
	Passwords *users.Passwords
	Keys      *keys.Manager
	Issuer    *tokens.Issuer
	Refresh   *tokens.RefreshStore
	Clients   *clients.Store
	Limiter   *ratelimit.Limiter
	Verifier  *authn.Verifier
	// Verifications are the email-verification links.
	Verifications *verify.Store
	// Mail publishes the account events the notifier turns into emails.
	Mail Publisher
	// SignupLimit counts sign-ups per client address; NoticeLimit the
	// "someone tried to sign up" notices per account; ResendLimit the
	// verification emails an account asks for.
	SignupLimit *limits.Window
	NoticeLimit *limits.Window
	ResendLimit *limits.Spacing
	// Redis holds the deny list (authn.DenyKey).
	Redis  *redis.Client
	Logger *slog.Logger
	// AccessTTL is the lifetime of user access tokens, ServiceTTL of service ones.
	AccessTTL  time.Duration
	ServiceTTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

type handler struct{ Deps }

// Register adds auth's routes to s.
func Register(s *httpapi.Server, d Deps) {
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{d}
	r := s.Router()
	route := func(path string, fn func(http.ResponseWriter, *http.Request) error, methods ...string) {
		s.SetBodyLimit(r.Handle(path, httpapi.ErrorHandler(d.Logger, fn)).Methods(methods...), MaxBodyBytes)
	}
	route("/v1/users", h.signup, http.MethodPost)
	route("/v1/token", h.token, http.MethodPost)
	route("/v1/token/refresh", h.refresh, http.MethodPost)
	route("/v1/logout", h.logout, http.MethodPost)
	route("/v1/validate", h.validate, http.MethodPost)
	route("/v1/verify", h.verifyEmail, http.MethodGet)
	s.SetBodyLimit(r.Handle("/v1/users/verify/resend",
		authn.Middleware(d.Verifier)(httpapi.ErrorHandler(d.Logger, h.resendVerification))).Methods(http.MethodPost), MaxBodyBytes)
	route(authn.JWKSPath, h.jwks, http.MethodGet, http.MethodHead)
	admin := func(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
		return authn.Middleware(d.Verifier)(authn.RequireRole(d.Verifier, users.RoleAdmin)(httpapi.ErrorHandler(d.Logger, fn)))
	}
	s.SetBodyLimit(r.Handle("/v1/keys/rotate", admin(h.rotate)).Methods(http.MethodPost), MaxBodyBytes)
	s.SetBodyLimit(r.Handle("/v1/users/{id}/roles/{role}", admin(h.changeRole)).Methods(http.MethodPut, http.MethodDelete), MaxBodyBytes)
}
