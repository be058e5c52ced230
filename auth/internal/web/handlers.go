package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/auth/internal/ratelimit"
	"github.com/audiomill/audiomill/auth/internal/tokens"
	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// Grant types of POST /v1/token.
const (
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// RoleService is the role of service-account tokens.
const RoleService = "service"

// denyLeeway keeps a jti denied a little past exp, covering verifiers' clock leeway.
const denyLeeway = 10 * time.Second

// TokenResponse is the body of a successful token request (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// Account is the public view of a user.
type Account struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
}

// ValidateResponse is the body of a successful POST /v1/validate.
type ValidateResponse struct {
	Active    bool     `json:"active"`
	Subject   string   `json:"sub"`
	Email     string   `json:"email,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Scope     string   `json:"scope,omitempty"`
	TokenID   string   `json:"jti"`
	SessionID string   `json:"sid,omitempty"`
	ExpiresAt int64    `json:"exp"`
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// tokenRequest is a POST /v1/token body, JSON or form.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	Email        string `json:"email"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Scope        string `json:"scope"`
}

func (h *handler) token(w http.ResponseWriter, r *http.Request) error {
	req, err := readTokenRequest(r)
	if err != nil {
		return err
	}
	switch req.GrantType {
	case "", GrantPassword:
		return h.passwordGrant(w, r, req)
	case GrantClientCredentials:
		return h.clientGrant(w, r, req)
	}
	return errs.E(errs.Invalid, "unsupported grant_type; use password or client_credentials")
}

func readTokenRequest(r *http.Request) (tokenRequest, error) {
	var req tokenRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mt == "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return req, errs.Wrap(err, errs.TooLarge, "request body is larger than %d bytes", tooLarge.Limit)
			}
			return req, errs.Wrap(err, errs.Invalid, "malformed form body")
		}
		for k, v := range r.PostForm {
			if len(v) > 1 {
				return req, errs.E(errs.Invalid, "parameter %q is repeated", k)
			}
		}
		f := r.PostForm
		req = tokenRequest{GrantType: f.Get("grant_type"), Email: f.Get("email"), Username: f.Get("username"),
			Password: f.Get("password"), ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"), Scope: f.Get("scope")}
	case r.ContentLength == 0 && mt == "":
		// Credentials in the Authorization header only.
	default:
		if err := httpapi.DecodeJSON(r, &req); err != nil {
			return req, err
		}
	}
	if req.Email == "" {
		req.Email = req.Username
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if req.GrantType == GrantClientCredentials {
			if req.ClientID != "" || req.ClientSecret != "" {
				return req, errs.E(errs.Invalid, "client credentials given twice (Basic and body)")
			}
			req.ClientID, req.ClientSecret = user, pass
		} else {
			if req.Email != "" || req.Password != "" {
				return req, errs.E(errs.Invalid, "credentials given twice (Basic and body)")
			}
			req.Email, req.Password = user, pass
		}
	}
	return req, nil
}

func (h *handler) passwordGrant(w http.ResponseWriter, r *http.Request, req tokenRequest) error {
	ctx := r.Context()
	email := users.NormalizeEmail(req.Email)
	if email == "" || req.Password == "" {
		return errs.E(errs.Invalid, "email and password are required")
	}
	if len(email) > users.MaxEmailLen {
		return errs.E(errs.Invalid, "email is too long")
	}
	ip := httpapi.ClientIP(r)
	pair, ipKey := ratelimit.PairKey(email, ip), ratelimit.IPKey(ip)
	if blocked, err := h.limited(w, r, pair, ipKey); blocked || err != nil {
		return err
	}
	u, err := h.Users.ByEmail(ctx, email)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return err
	}
	var hash []byte
	if err == nil {
		hash = u.PasswordHash
	}
	if !h.Passwords.Check(hash, req.Password) {
		return errs.E(errs.Unauthorized, "invalid email or password")
	}
	h.loginSucceeded(ctx, pair, ipKey)
	return h.issueUserTokens(w, r, u, "")
}

// issueUserTokens answers with an access token for u and a refresh token:
// next in family when it is set (refresh), else the first of a new family.
func (h *handler) issueUserTokens(w http.ResponseWriter, r *http.Request, u users.User, next string, family ...string) error {
	refresh, fam := next, ""
	if len(family) > 0 {
		fam = family[0]
	}
	if refresh == "" {
		var err error
		if refresh, fam, err = h.Refresh.Issue(r.Context(), u.ID); err != nil {
			return err
		}
	}
	access, err := h.Issuer.Issue(tokens.Subject{ID: u.ID, Email: u.Email, Roles: u.Roles, Scopes: userScopes(u.Roles), SessionID: fam, EmailVerified: u.EmailVerified}, h.AccessTTL)
	if err != nil {
		return err
	}
	h.Logger.InfoContext(r.Context(), "token issued", "sub", u.ID, "jti", access.ID)
	writeToken(w, TokenResponse{AccessToken: access.Token, TokenType: "Bearer",
		ExpiresIn: int64(h.AccessTTL / time.Second), RefreshToken: refresh})
	return nil
}

// userScopes are the scopes of a user's access tokens, from the user's
// roles: the role storage (granted by an admin) gives the scope storage.
func userScopes(roles []string) []string {
	if slices.Contains(roles, users.RoleStorage) {
		return []string{authn.StorageScope}
	}
	return nil
}

// grantableRoles are the roles an admin grants and revokes through
// /v1/users/{id}/roles/{role}.
var grantableRoles = []string{users.RoleStorage}

// changeRole is PUT (grant) and DELETE (revoke) /v1/users/{id}/roles/{role},
// for admins. Both are idempotent and answer the account; the change
// shows in the user's next access token (a login or a refresh).
func (h *handler) changeRole(w http.ResponseWriter, r *http.Request) error {
	id, role := mux.Vars(r)["id"], mux.Vars(r)["role"]
	if !slices.Contains(grantableRoles, role) {
		return errs.E(errs.Invalid, "role %q cannot be granted or revoked here; these can: %s", role, strings.Join(grantableRoles, ", "))
	}
	change, verb := h.Users.GrantRole, "granted"
	if r.Method == http.MethodDelete {
		change, verb = h.Users.RevokeRole, "revoked"
	}
	u, err := change(r.Context(), id, role)
	if err != nil {
		return err
	}
	p, _ := authn.FromContext(r.Context())
	h.Logger.InfoContext(r.Context(), "role "+verb, "user_id", u.ID, "role", role, "by", p.Subject)
	httpapi.WriteJSON(w, http.StatusOK, Account{ID: u.ID, Email: u.Email, Roles: u.Roles, CreatedAt: u.CreatedAt})
	return nil
}

func (h *handler) clientGrant(w http.ResponseWriter, r *http.Request, req tokenRequest) error {
	ctx := r.Context()
	if req.ClientID == "" || req.ClientSecret == "" {
		return errs.E(errs.Invalid, "client_id and client_secret are required")
	}
	ip := httpapi.ClientIP(r)
	pair, ipKey := ratelimit.ClientKey(req.ClientID, ip), ratelimit.IPKey(ip)
	if blocked, err := h.limited(w, r, pair, ipKey); blocked || err != nil {
		return err
	}
	c, ok := h.Clients.Authenticate(req.ClientID, req.ClientSecret)
	if !ok {
		return errs.E(errs.Unauthorized, "invalid client credentials")
	}
	h.loginSucceeded(ctx, pair, ipKey)
	scopes := c.Scopes
	if req.Scope != "" { // a client may ask for fewer scopes than it has
		scopes = nil
		for _, s := range strings.Fields(req.Scope) {
			if !containsStr(c.Scopes, s) {
				return errs.E(errs.Forbidden, "scope %q is not granted to this client", s)
			}
			scopes = append(scopes, s)
		}
	}
	access, err := h.Issuer.Issue(tokens.Subject{ID: authn.ServiceSubjectPrefix + c.ID, Roles: []string{RoleService}, Scopes: scopes}, h.ServiceTTL)
	if err != nil {
		return err
	}
	h.Logger.InfoContext(ctx, "service token issued", "client", c.ID, "jti", access.ID)
	writeToken(w, TokenResponse{AccessToken: access.Token, TokenType: "Bearer",
		ExpiresIn: int64(h.ServiceTTL / time.Second), Scope: strings.Join(scopes, " ")})
	return nil
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// loginSucceeded forgets the attempts of pair and gives ipKey back the
// attempt this login counted.
func (h *handler) loginSucceeded(ctx context.Context, pair, ipKey string) {
	if err := h.Limiter.Reset(ctx, pair); err != nil {
		h.Logger.WarnContext(ctx, "rate limit reset failed", "err", err.Error())
	}
	if err := h.Limiter.Refund(ctx, ipKey); err != nil {
		h.Logger.WarnContext(ctx, "rate limit refund failed", "err", err.Error())
	}
}

// limited counts an attempt for keys before it is evaluated, or answers
// 429 with Retry-After (and counts nothing) when one of them is backing off.
func (h *handler) limited(w http.ResponseWriter, r *http.Request, keys ...string) (bool, error) {
	wait, err := h.Limiter.Reserve(r.Context(), keys...)
	if err != nil {
		return false, err
	}
	if wait <= 0 {
		return false, nil
	}
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	h.Logger.WarnContext(r.Context(), "login attempt refused: backing off", "retry_after_s", secs)
	httpapi.WriteError(w, r, h.Logger, errs.E(errs.RateLimited, "too many failed attempts; retry in %d seconds", secs))
	return true, nil
}

func writeToken(w http.ResponseWriter, t TokenResponse) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, t)
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func readRefreshToken(r *http.Request, optional bool) (string, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		if err := r.ParseForm(); err != nil {
			return "", errs.Wrap(err, errs.Invalid, "malformed form body")
		}
		return r.PostForm.Get("refresh_token"), nil
	}
	if optional && r.ContentLength == 0 {
		return "", nil
	}
	var in refreshRequest
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return "", err
	}
	return in.RefreshToken, nil
}

func (h *handler) refresh(w http.ResponseWriter, r *http.Request) error {
	tok, err := readRefreshToken(r, false)
	if err != nil {
		return err
	}
	if tok == "" {
		return errs.E(errs.Invalid, "refresh_token is required")
	}
	next, sub, fam, err := h.Refresh.Rotate(r.Context(), tok)
	if err != nil {
		return err
	}
	u, err := h.Users.ByID(r.Context(), sub)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			_ = h.Refresh.RevokeFamily(r.Context(), fam)
			return errs.Wrap(err, errs.Unauthorized, "invalid refresh token")
		}
		return err
	}
	return h.issueUserTokens(w, r, u, next, fam)
}

// logout is POST /v1/logout: it ends the session of the bearer access
// token and/or of the refresh token: the refresh family is revoked and
// every access token of the session (sid) is refused from then on. With
// ?all=true it ends every session of the token's user ("log out
// everywhere").
func (h *handler) logout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	all, err := allParam(r)
	if err != nil {
		return err
	}
	refreshTok, err := readRefreshToken(r, true)
	if err != nil {
		return err
	}
	raw, hasBearer := authn.BearerToken(r.Header.Get("Authorization"))
	if !hasBearer && refreshTok == "" {
		return errs.E(errs.Unauthorized, "a bearer token or a refresh_token is required")
	}
	var sessions []string
	subject := ""
	if hasBearer {
		p, err := h.Verifier.Verify(ctx, raw)
		if err != nil {
			return err
		}
		if err := h.deny(ctx, p); err != nil {
			return err
		}
		if p.SessionID != "" {
			sessions = append(sessions, p.SessionID)
		}
		if !p.IsService() {
			subject = p.Subject
		}
	}
	if refreshTok != "" {
		fam, sub, err := h.Refresh.Owner(ctx, refreshTok)
		if err != nil {
			return err
		}
		if fam == "" && !hasBearer {
			return errs.E(errs.Unauthorized, "invalid refresh token")
		}
		if subject != "" && sub != "" && sub != subject {
			return errs.E(errs.Invalid, "the refresh token and the access token belong to different accounts")
		}
		if fam != "" {
			sessions = append(sessions, fam)
			subject = cmp.Or(subject, sub)
		}
	}
	if all {
		if subject == "" {
			return errs.E(errs.Invalid, "all=true needs a user's access token or refresh token")
		}
		live, err := h.Refresh.Sessions(ctx, subject)
		if err != nil {
			return err
		}
		sessions = append(sessions, live...)
	}
	slices.Sort(sessions)
	sessions = slices.Compact(sessions)
	for _, sid := range sessions {
		if err := h.endSession(ctx, sid); err != nil {
			return err
		}
	}
	h.Logger.InfoContext(ctx, "logged out", "sub", subject, "sessions", len(sessions), "all", all)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// allParam reads the query parameter all of POST /v1/logout.
func allParam(r *http.Request) (bool, error) {
	q := r.URL.Query()
	if _, ok := q["all"]; !ok {
		return false, nil
	}
	if len(q["all"]) > 1 {
		return false, errs.E(errs.Invalid, "parameter all is repeated")
	}
	all, err := strconv.ParseBool(q.Get("all"))
	if err != nil {
		return false, errs.E(errs.Invalid, "parameter all must be true or false")
	}
	return all, nil
}

// endSession revokes the refresh family sid and denies every access token
// of it for as long as one issued now could live.
func (h *handler) endSession(ctx context.Context, sid string) error {
	if err := h.Refresh.RevokeFamily(ctx, sid); err != nil {
		return err
	}
	if err := h.Redis.Set(ctx, authn.SessionDenyKey(sid), "1", h.AccessTTL+denyLeeway).Err(); err != nil {
		return fmt.Errorf("deny session: %w", err)
	}
	return nil
}

// deny puts p's jti on the deny list until the token would expire.
func (h *handler) deny(ctx context.Context, p authn.Principal) error {
	ttl := p.ExpiresAt.Sub(h.Now()) + denyLeeway
	if ttl <= 0 {
		return nil
	}
	if err := h.Redis.Set(ctx, authn.DenyKey(p.TokenID), "1", ttl).Err(); err != nil {
		return fmt.Errorf("deny jti: %w", err)
	}
	h.Logger.InfoContext(ctx, "token revoked", "sub", p.Subject, "jti", p.TokenID)
	return nil
}

type validateRequest struct {
	Token string `json:"token"`
}

func (h *handler) validate(w http.ResponseWriter, r *http.Request) error {
	raw, ok := authn.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		if r.Header.Get("Authorization") != "" || r.ContentLength == 0 {
			return errs.E(errs.Unauthorized, "a bearer token is required")
		}
		var in validateRequest
		if err := httpapi.DecodeJSON(r, &in); err != nil {
			return err
		}
		raw = in.Token
	}
	p, err := h.Verifier.Verify(r.Context(), raw)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, ValidateResponse{Active: true, Subject: p.Subject, Email: p.Email, Roles: p.Roles,
		Scope: strings.Join(p.Scopes, " "), TokenID: p.TokenID, SessionID: p.SessionID, ExpiresAt: p.ExpiresAt.Unix()})
	return nil
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) error {
	pub, err := h.Keys.Published(r.Context())
	if err != nil {
		return errs.Wrap(err, errs.Unavailable, "signing keys unavailable")
	}
	b, err := authn.MarshalJWKS(pub)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=30")
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func (h *handler) rotate(w http.ResponseWriter, r *http.Request) error {
	k, err := h.Keys.Rotate(r.Context())
	if err != nil {
		return err
	}
	p, _ := authn.FromContext(r.Context())
	h.Logger.InfoContext(r.Context(), "key rotation requested", "by", p.Subject, "kid", k.ID)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"kid": k.ID, "created_at": k.CreatedAt})
	return nil
}
