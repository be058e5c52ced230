package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/audiomill/audiomill/platform/errs"
)

// unavailableMessage is the message of every errs.Unavailable the client
// makes.
const unavailableMessage = "file storage is unavailable"

// StatusError is the cause of the error of an error answer: the request,
// and the status, code and message the service answered. The error itself
// is an *errs.Error with the service's code and message (errs.Unavailable
// for a 5xx); errors.As finds the StatusError in it.
type StatusError struct {
	Method string
	// Path is the request's path, escaped.
	Path   string
	Status int
	// Code is the service's code (from the status when its body had none,
	// or one of the service's own, such as bucket_limit).
	Code    errs.Code
	Message string
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("filestorage answered %d %s to %s %s", e.Status, e.Code, e.Method, e.Path)
}

// answerError is the error of resp, an error answer to req (its body is
// read, not closed).
func answerError(req *http.Request, resp *http.Response) error {
	se := &StatusError{Method: req.Method, Path: req.URL.EscapedPath(), Status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    errs.Code
			Message string
		} `json:"error"`
	}
	err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	switch {
	case err == nil && known(body.Error.Code):
		se.Code, se.Message = body.Error.Code, body.Error.Message
	case err == nil && body.Error.Code != "" && body.Error.Message != "":
		// A code of the service's own (bucket_limit): its status's
		// code, its message.
		se.Code, se.Message = codeOfStatus(resp.StatusCode), body.Error.Message
	default:
		se.Code, se.Message = codeOfStatus(resp.StatusCode), http.StatusText(resp.StatusCode)
	}
	if se.Status >= 500 || se.Code == errs.Unavailable {
		return errs.Wrap(se, errs.Unavailable, unavailableMessage)
	}
	return &errs.Error{Code: se.Code, Message: se.Message, Err: se}
}

// known reports whether code is one of errs' codes.
func known(code errs.Code) bool {
	switch code {
	case errs.Invalid, errs.Unauthorized, errs.Forbidden, errs.NotFound, errs.Conflict, errs.TooLarge,
		errs.RateLimited, errs.Unavailable, errs.Internal:
		return true
	}
	return false
}

// codeOfStatus is the code of an answer whose body names none.
func codeOfStatus(s int) errs.Code {
	switch s {
	case http.StatusBadRequest, http.StatusRequestedRangeNotSatisfiable:
		return errs.Invalid
	case http.StatusUnauthorized:
		return errs.Unauthorized
	case http.StatusForbidden:
		return errs.Forbidden
	case http.StatusNotFound, http.StatusGone:
		return errs.NotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		return errs.Conflict
	case http.StatusRequestEntityTooLarge:
		return errs.TooLarge
	case http.StatusTooManyRequests:
		return errs.RateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return errs.Unavailable
	}
	return errs.Internal
}

// unavailable gives err, the failure to find the service, a code: its own
// when it has one, else errs.Unavailable.
func unavailable(err error) error {
	if errs.IsCoded(err) {
		return err
	}
	return errs.Wrap(err, errs.Unavailable, unavailableMessage)
}

// cutShort makes err, the failure to read an answer, errs.Unavailable when
// the answer was cut short (the connection failed or ended early).
func cutShort(err error) error {
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne) || errs.DependencyDown(err) {
		return errs.Wrap(err, errs.Unavailable, unavailableMessage)
	}
	return err
}
