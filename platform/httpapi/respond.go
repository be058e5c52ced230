package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/audiomill/audiomill/platform/errs"
)

// statusOf is the one place where error codes become HTTP statuses.
var statusOf = map[errs.Code]int{
	errs.Invalid:             http.StatusBadRequest,
	errs.Unauthorized:        http.StatusUnauthorized,
	errs.Forbidden:           http.StatusForbidden,
	errs.NotFound:            http.StatusNotFound,
	errs.Conflict:            http.StatusConflict,
	errs.TooLarge:            http.StatusRequestEntityTooLarge,
	errs.RateLimited:         http.StatusTooManyRequests,
	errs.EmailUnverified:     http.StatusForbidden,
	errs.IdempotencyMismatch: http.StatusUnprocessableEntity,
	errs.LinkInvalid:         http.StatusForbidden,
	errs.LinkExpired:         http.StatusForbidden,
	errs.Unavailable:         http.StatusServiceUnavailable,
	errs.Internal:            http.StatusInternalServerError,
}

// Status returns the HTTP status for an error code (500 for an unknown one).
func Status(code errs.Code) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON body of every error response:
// {"error":{"code":"…","message":"…"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    errs.Code `json:"code"`
	Message string    `json:"message"`
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError maps err to its status (a *StatusError's own) and JSON body and logs it: internal
// errors at error level with their cause (the client sees only "internal
// error"), the others at info level.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	code := errs.CodeOf(err)
	status := Status(code)
	var se *StatusError
	if errors.As(err, &se) {
		status = se.Status
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	logger.Log(r.Context(), level, "request failed",
		"method", r.Method, "path", r.URL.Path, "status", status, "code", code, "err", err.Error())
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: errs.MessageOf(err)}})
}

// DecodeJSON reads one JSON object from r's body into v: an unknown field,
// trailing data, a wrong content type or a malformed document is an
// errs.Invalid naming the problem; a body over the route's size limit is
// errs.TooLarge.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errs.E(errs.Invalid, "content type must be application/json, not %q", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			return jsonError(err)
		}
		return errs.E(errs.Invalid, "request body must hold a single JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errs.IsCoded(err): // already classified (a body that arrived too slowly)
		return err
	case errors.As(err, &tooLarge):
		return errs.Wrap(err, errs.TooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return errs.E(errs.Invalid, "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "request body is truncated JSON")
	case errors.As(err, &syntax):
		return errs.E(errs.Invalid, "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return errs.E(errs.Invalid, "field %q must be %s", typ.Field, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return errs.E(errs.Invalid, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return errs.Wrap(err, errs.Invalid, "invalid JSON body")
}

// ErrorHandler adapts a handler that returns an error: a nil error means the
// handler wrote its response; any other is written by WriteError.
func ErrorHandler(logger *slog.Logger, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, logger, err)
		}
	})
}

// notFound and methodNotAllowed answer unmatched requests with JSON errors.
func notFound(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, logger, errs.E(errs.NotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

func methodNotAllowed(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "method not allowed", "method", r.Method, "path", r.URL.Path)
		WriteJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{
			Code: errs.Invalid, Message: fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path),
		}})
	})
}
