package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/logging"
)

// RequestIDHeader carries the request id from the edge, through every
// service, and back to the client.
const RequestIDHeader = "X-Request-Id"

const maxRequestIDLen = 128

// validRequestID reports whether an incoming id is safe to log and echo:
// 1–128 characters of [A-Za-z0-9._:-]. Anything else is replaced.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// withRequestID accepts the caller's X-Request-Id (or makes one), echoes it in
// the response and puts it in the request's context for the logger.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = logging.NewRequestID()
			r.Header.Set(RequestIDHeader, id)
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(logging.WithRequestID(r.Context(), id)))
	})
}

// quietPaths are polled by Consul and Prometheus every second or so; their
// access lines are logged at debug level only.
var quietPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// observe logs one access line per request and records its metrics.
func observe(logger *slog.Logger, m *httpMetrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := new(string)
		*route = "unmatched"
		m.inFlight.Inc()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			m.inFlight.Dec()
			elapsed := time.Since(start)
			status := rec.statusCode()
			m.requests.WithLabelValues(*route, r.Method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(*route, r.Method).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if quietPaths[r.URL.Path] {
				level = slog.LevelDebug
			}
			logger.Log(r.Context(), level, "request",
				"method", r.Method, "path", r.URL.Path, "route", *route, "status", status,
				"bytes", rec.bytes, "duration_ms", float64(elapsed.Microseconds())/1000, "client", ClientIP(r), "remote", r.RemoteAddr)
		}()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), routeKey{}, route)))
	})
}

type routeKey struct{}

// nameRoute runs inside the router, after a route matched, and tells observe
// its path template so metrics are labelled by route, not by raw path.
func nameRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := r.Context().Value(routeKey{}).(*string); ok {
			if cur := mux.CurrentRoute(r); cur != nil {
				if tpl, err := cur.GetPathTemplate(); err == nil {
					*p = tpl
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in a handler into a logged 500 JSON error; the
// process keeps serving. http.ErrAbortHandler keeps its meaning.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			logger.ErrorContext(r.Context(), "panic serving request",
				"method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rec, ok := w.(*recorder); ok && rec.wroteHeader {
				return // the response has begun; the client sees a cut-off body
			}
			WriteJSON(w, http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: errs.Internal, Message: "internal error"}})
		}()
		next.ServeHTTP(w, r)
	})
}

// LimitBody caps the request body of next at limit bytes: a declared
// Content-Length above it is refused at once with 413, and reading past it
// fails (DecodeJSON turns that into errs.TooLarge). The server applies its
// default limit to every route; wrap a route to give it its own.
func LimitBody(limit int64, logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			WriteError(w, r, logger, errs.E(errs.TooLarge, "request body is larger than %d bytes", limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// recorder remembers the status and size of a response. It keeps the
// optional interfaces streaming handlers rely on (Flush, ReadFrom, Unwrap for
// http.ResponseController).
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (rec *recorder) WriteHeader(status int) {
	if !rec.wroteHeader {
		rec.status, rec.wroteHeader = status, true
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy use the connection's sendfile/splice path.
func (rec *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := rec.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(rec.ResponseWriter, src)
	}
	rec.bytes += n
	return n, err
}

func (rec *recorder) Flush() {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *recorder) statusCode() int {
	if rec.status == 0 {
		return http.StatusOK
	}
	return rec.status
}

// isClosed reports whether err means the listener was closed on purpose.
func isClosed(err error) bool { return errors.Is(err, http.ErrServerClosed) }
