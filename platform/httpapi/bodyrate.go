package httpapi

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// Defaults of the minimum body rate, for the services' configuration
// (service.ReadBase); Options left zero enforce no rate.
const (
	DefaultBodyMinRate    = 4 << 10 // bytes per second
	DefaultBodyRateWindow = 30 * time.Second
)

// minBodyRate bounds how long a request body may take: from the start of the
// request, each window must bring at least rate×window bytes or the end of
// the body, or the connection's read deadline passes and reading the body
// fails (an errs.Invalid the handler returns, and the connection closes).
// A client sending 1 byte now and then is cut off one window after its last
// full window; a body of n bytes takes at most about n/rate + window. The
// edge's between-bytes timeout cannot do this: a drip resets it every time.
// Requests without a body are left alone (a read deadline would cancel their
// context through the server's background read).
func minBodyRate(rate int64, window time.Duration, logger *slog.Logger, next http.Handler) http.Handler {
	if rate <= 0 || window <= 0 {
		return next
	}
	quota := max(1, rate*window.Milliseconds()/1000)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		start := time.Now()
		if err := rc.SetReadDeadline(start.Add(window)); err != nil {
			// No connection deadlines behind w (not a net/http server): nothing to enforce.
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &rateReader{ReadCloser: r.Body, rc: rc, window: window, quota: quota,
			rate: rate, log: func(read int64) {
				logger.InfoContext(r.Context(), "request body too slow; cut off",
					"method", r.Method, "path", r.URL.Path, "bytes", read,
					"elapsed", time.Since(start).Round(time.Millisecond).String(), "min_rate", rate, "window", window.String())
			}}
		next.ServeHTTP(w, r)
	})
}

// rateReader moves the connection's read deadline one window on each time a
// window's quota has arrived, and lifts it at the end of the body.
type rateReader struct {
	io.ReadCloser
	rc      *http.ResponseController
	window  time.Duration
	quota   int64 // bytes each window must bring
	rate    int64
	inWin   int64 // bytes of the current window
	total   int64
	slowErr error
	log     func(read int64)
}

func (b *rateReader) Read(p []byte) (int, error) {
	if b.slowErr != nil {
		return 0, b.slowErr
	}
	n, err := b.ReadCloser.Read(p)
	b.inWin += int64(n)
	b.total += int64(n)
	switch {
	case err == io.EOF:
		// Lifted at once: the server's background read of the idle
		// connection starts now, and must not see this request's deadline.
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.log(b.total)
		b.slowErr = errs.Wrap(err, errs.Invalid, "the request body arrived slower than %d bytes/s", b.rate)
		return n, b.slowErr
	case err == nil && b.inWin >= b.quota:
		b.inWin = 0
		_ = b.rc.SetReadDeadline(time.Now().Add(b.window))
	}
	return n, err
}
