// Package errs holds audiomill's one error type: an error with a code that the
// HTTP layer maps, in one place (httpapi), to a status and a JSON body.
//
// Adapters translate driver errors into these codes at the boundary:
//
//	if errors.Is(err, mongo.ErrNoDocuments) {
//		return errs.E(errs.NotFound, "no such file")
//	}
package errs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Code classifies an error for callers and for the HTTP mapping.
type Code string

// The error codes. Their HTTP statuses are set in httpapi.
const (
	Invalid      Code = "invalid"
	Unauthorized Code = "unauthorized"
	Forbidden    Code = "forbidden"
	NotFound     Code = "not_found"
	Conflict     Code = "conflict"
	TooLarge     Code = "too_large"
	RateLimited  Code = "rate_limited"
	// EmailUnverified: the account has not verified its email address yet,
	// and the action needs it (uploads). Mapped to 403 Forbidden.
	EmailUnverified Code = "email_unverified"
	// IdempotencyMismatch: the request's Idempotency-Key was used for
	// another request. Mapped to 422 Unprocessable Content.
	IdempotencyMismatch Code = "idempotency_mismatch"
	// LinkInvalid and LinkExpired: a signed link (the web page's MP3
	// links) that does not check out, or is past its expiry. Mapped to 403.
	LinkInvalid Code = "link_invalid"
	LinkExpired Code = "link_expired"
	Unavailable Code = "unavailable"
	Internal    Code = "internal"
)

// Error is an error with a code and a message fit to show a user. Err, when
// set, is the underlying cause: it is logged, never shown.
type Error struct {
	Code    Code
	Message string
	Err     error
}

// E returns an *Error with code and a user-facing message.
func E(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with code and message whose cause is err.
func Wrap(err error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// Error implements error; it includes the cause, for logs.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the code of the first *Error in err's chain, "" for a nil
// error, and for anything else Unavailable when err says a dependency did
// not answer (DependencyDown), Internal otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if DependencyDown(err) {
		return Unavailable
	}
	return Internal
}

// IsCoded reports whether err's chain holds an *Error: an adapter has
// already classified it.
func IsCoded(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// MessageOf returns the user-facing message of err: the message of its
// *Error, or a fixed text for anything else, so internal details never
// reach a client.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != Internal {
		return e.Message
	}
	if e == nil && DependencyDown(err) {
		return "a service this one depends on is unavailable; try again later"
	}
	return "internal error"
}

// DependencyDown reports whether err says that something this process
// called did not answer: a deadline passed, the connection was refused or
// reset, or a network operation timed out. Driver errors (the database's
// server selection, a broker's dial) wrap these, so a dependency that is
// down maps to Unavailable without each adapter translating it.
func DependencyDown(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &ne) && ne.Timeout())
}
