package httpapi

import (
	"github.com/audiomill/audiomill/platform/errs"
)

// StatusError is an error answered with a status of its own, for the few
// that HTTP gives a status the error codes do not have (412, 415, 416, 423,
// tus's 460): WriteError answers Status with Err's code and message.
type StatusError struct {
	Status int
	Err    *errs.Error
}

// WithStatus returns err, to be answered with status.
func WithStatus(status int, err *errs.Error) error { return &StatusError{Status: status, Err: err} }

// Error implements error.
func (e *StatusError) Error() string { return e.Err.Error() }

// Unwrap returns the coded error.
func (e *StatusError) Unwrap() error { return e.Err }
