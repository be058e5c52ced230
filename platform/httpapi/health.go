package httpapi

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// Check is one dependency /readyz pings.
type Check struct {
	// Name names the dependency in the response and the logs ("mongodb", "rabbitmq").
	Name string
	// Ping returns nil when the dependency answers; it must honour ctx.
	Ping func(ctx context.Context) error
	// Optional marks a dependency the service can do without for a while
	// (e.g. the broker, when unpublished events wait in an outbox): its
	// failure shows as "degraded" in the body but keeps /readyz at 200.
	Optional bool
}

// ReadyBody is the JSON body of /readyz: each check's result ("ok",
// "failed", or "degraded" for an optional one); on failure it also carries
// the error naming what failed.
type ReadyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Error  *ErrorDetail      `json:"error,omitempty"`
}

// ready runs every check concurrently, each bounded by timeout, and answers
// 200 when all pass or 503 naming those that failed. Failures are logged
// with their cause; the body says only which dependency failed.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.readyTimeout)
	defer cancel()

	s.mu.RLock()
	checks := append([]Check(nil), s.checks...)
	s.mu.RUnlock()

	results := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.Ping(ctx)
		}()
	}
	wg.Wait()

	body := ReadyBody{Status: "ready", Checks: make(map[string]string, len(checks))}
	var failed []string
	for i, c := range checks {
		if results[i] != nil && c.Optional {
			body.Checks[c.Name] = "degraded"
			s.logger.WarnContext(r.Context(), "optional dependency unreachable", "check", c.Name, "err", results[i].Error())
			continue
		}
		if results[i] != nil {
			failed = append(failed, c.Name)
			body.Checks[c.Name] = "failed"
			s.logger.WarnContext(r.Context(), "readiness check failed", "check", c.Name, "err", results[i].Error())
			continue
		}
		body.Checks[c.Name] = "ok"
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		body.Status = "unavailable"
		body.Error = &ErrorDetail{Code: errs.Unavailable, Message: "not ready: " + strings.Join(failed, ", ") + " unreachable"}
		WriteJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	WriteJSON(w, http.StatusOK, body)
}

func (s *Server) alive(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]any{
		"status":  "ok",
		"service": s.name,
		"uptime":  time.Since(s.started).Round(time.Second).String(),
	})
}
