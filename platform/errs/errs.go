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
	"errors"
	"fmt"
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
	Unavailable  Code = "unavailable"
	Internal     Code = "internal"
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

// CodeOf returns the code of the first *Error in err's chain, Internal when
// there is none, and "" for a nil error.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// MessageOf returns the user-facing message of err: the message of its
// *Error, or "internal error" for anything else, so internal details never
// reach a client.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != Internal {
		return e.Message
	}
	return "internal error"
}
