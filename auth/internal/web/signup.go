package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// SignupResponse is the body of 202 Accepted from POST /v1/users. It is the
// same whether the address was free or already had an account, so sign-up
// does not tell who has one: the new account's owner gets a verification
// email, an existing account's owner a notice that someone tried.
type SignupResponse struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// signupAccepted is the one answer of a sign-up that passed validation.
var signupAccepted = SignupResponse{Status: "pending",
	Message: "check your inbox: we sent an email to this address with what to do next"}

// Publisher publishes an event (*broker.Conn).
type Publisher interface {
	Publish(ctx context.Context, routingKey string, env broker.Envelope) error
}

// signup is POST /v1/users. Per client address it is limited (SignupLimit);
// the password is hashed (bcrypt) whether or not the address has an
// account, so the answer and its timing are the same either way.
func (h *handler) signup(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if wait, err := h.SignupLimit.Take(ctx, httpapi.ClientIP(r)); err != nil {
		return err
	} else if wait > 0 {
		return h.tooMany(w, wait, "too many sign-ups from this address; retry in %d seconds")
	}
	var in credentials
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	email := users.NormalizeEmail(in.Email)
	if err := users.ValidateEmail(email); err != nil {
		return err
	}
	if err := users.ValidatePassword(in.Password); err != nil {
		return err
	}
	hash, err := h.Passwords.Hash(in.Password)
	if err != nil {
		return err
	}
	u := users.User{Email: email, PasswordHash: hash, Roles: []string{users.RoleUser}}
	err = h.Users.Create(ctx, &u)
	switch {
	case err == nil:
		h.Logger.InfoContext(ctx, "account created; verification email requested", "user_id", u.ID)
		h.sendVerification(ctx, r, u)
	case errs.CodeOf(err) == errs.Conflict:
		h.noticeExisting(ctx, r, email)
	default:
		return err
	}
	httpapi.WriteJSON(w, http.StatusAccepted, signupAccepted)
	return nil
}

// sendVerification issues a new link for u and asks the notifier to email
// it. A failure is logged, not returned: the account exists, and its owner
// asks for a new link after logging in (POST /v1/users/verify/resend).
func (h *handler) sendVerification(ctx context.Context, r *http.Request, u users.User) bool {
	token, exp, err := h.Verifications.Issue(ctx, u.ID)
	if err != nil {
		h.Logger.ErrorContext(ctx, "verification link not issued", "user_id", u.ID, "err", err.Error())
		return false
	}
	p := events.AccountVerify{UserID: u.ID, Email: u.Email, Locale: localeOf(r), Token: token, ExpiresAt: exp}
	return h.publish(ctx, r, "verify-"+broker.NewID(), p, u.ID)
}

// noticeExisting tells the owner of email that someone tried to sign up
// with it: at most one notice per address per NoticeLimit window, so
// sign-ups cannot be used to flood an inbox.
func (h *handler) noticeExisting(ctx context.Context, r *http.Request, email string) {
	existing, err := h.Users.ByEmail(ctx, email)
	if err != nil {
		h.Logger.ErrorContext(ctx, "sign-up with a taken address: account not read", "err", err.Error())
		return
	}
	h.Logger.InfoContext(ctx, "sign-up with the address of an existing account", "user_id", existing.ID)
	if wait, err := h.NoticeLimit.Take(ctx, existing.ID); err != nil || wait > 0 {
		if err != nil {
			h.Logger.WarnContext(ctx, "sign-up notice limit unavailable; no notice sent", "err", err.Error())
		}
		return
	}
	p := events.AccountExists{UserID: existing.ID, Email: existing.Email, Locale: localeOf(r)}
	h.publish(ctx, r, "exists-"+broker.NewID(), p, existing.ID)
}

func (h *handler) publish(ctx context.Context, r *http.Request, emailID string, p events.Payload, userID string) bool {
	env, err := broker.NewEnvelope(p.EventType(), emailID, r.Header.Get(httpapi.RequestIDHeader), p)
	if err == nil {
		err = p.Validate()
	}
	if err == nil {
		err = h.Mail.Publish(context.WithoutCancel(ctx), p.EventType(), env)
	}
	if err != nil {
		h.Logger.ErrorContext(ctx, "email event not published", "type", p.EventType(), "user_id", userID, "err", err.Error())
		return false
	}
	return true
}

// verifyEmail is GET /v1/verify?token=…: the link of the verification
// email. It works once, until it expires.
func (h *handler) verifyEmail(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if len(q["token"]) != 1 {
		return errs.E(errs.Invalid, "the link needs exactly one token parameter")
	}
	id, err := h.Verifications.Consume(r.Context(), q.Get("token"))
	if err != nil {
		h.Logger.InfoContext(r.Context(), "verification link refused", "err", err.Error())
		return err
	}
	h.Logger.InfoContext(r.Context(), "email verified", "user_id", id)
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, SignupResponse{Status: "verified",
		Message: "your email address is verified; log in again (or refresh your token) to upload"})
	return nil
}

// resendVerification is POST /v1/users/verify/resend for a logged-in user
// whose address is not verified: a new link (the old ones stop working),
// at most once per interval and a few times a day (ResendLimit).
func (h *handler) resendVerification(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, _ := authn.FromContext(ctx)
	if p.IsService() {
		return errs.E(errs.Forbidden, "service accounts have no email address to verify")
	}
	u, err := h.Users.ByID(ctx, p.Subject)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return errs.Wrap(err, errs.Unauthorized, "the account of this token no longer exists")
		}
		return err
	}
	if u.EmailVerified {
		return errs.E(errs.Conflict, "the email address is already verified")
	}
	wait, err := h.ResendLimit.Take(ctx, u.ID)
	if err != nil {
		return err
	}
	if wait > 0 {
		return h.tooMany(w, wait, "a verification email was sent recently; retry in %d seconds")
	}
	if !h.sendVerification(ctx, r, u) {
		return errs.E(errs.Unavailable, "the verification email could not be sent; try again later")
	}
	h.Logger.InfoContext(ctx, "verification email requested again", "user_id", u.ID)
	httpapi.WriteJSON(w, http.StatusAccepted, SignupResponse{Status: "pending",
		Message: "a new verification email is on its way; earlier links no longer work"})
	return nil
}

// tooMany sets Retry-After and returns the 429 error with msg (one %d: the seconds).
func (h *handler) tooMany(w http.ResponseWriter, wait time.Duration, msg string) error {
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	return errs.E(errs.RateLimited, msg, secs)
}

// localeOf is the first language of Accept-Language, for the email's
// language ("" when there is none).
func localeOf(r *http.Request) string {
	first, _, _ := strings.Cut(r.Header.Get("Accept-Language"), ",")
	first, _, _ = strings.Cut(first, ";")
	first = strings.TrimSpace(first)
	if len(first) > 35 || first == "*" || strings.ContainsAny(first, " \t") {
		return ""
	}
	return first
}
