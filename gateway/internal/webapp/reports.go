package webapp

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// DefaultReportsPerMinute bounds the CSP reports one replica logs a minute.
const DefaultReportsPerMinute = 120

// maxReportBody bounds a report's body (a browser's are about 1 KiB).
const maxReportBody = 16 << 10

// maxField bounds each logged field of a report.
const maxField = 256

// reporter is POST /api/v1/csp-reports: each report logged at WARN (its
// document, directive and blocked URL, each cut to maxField), counted in
// gateway_csp_reports_total{result}, at most perMinute a minute.
type reporter struct {
	opts      Options
	perMinute int
	counter   *prometheus.CounterVec

	mu          sync.Mutex
	windowStart time.Time
	inWindow    int
}

func newReporter(opts Options) (*reporter, error) {
	if opts.ReportsPerMinute <= 0 {
		opts.ReportsPerMinute = DefaultReportsPerMinute
	}
	rp := &reporter{opts: opts, perMinute: opts.ReportsPerMinute,
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_csp_reports_total",
			Help: "Content-Security-Policy violation reports from browsers, by result: logged, rate_limited, invalid.",
		}, []string{"result"})}
	if opts.Registerer != nil {
		if err := httpapi.RegisterMetrics(opts.Registerer, "csp reports", rp.counter); err != nil {
			return nil, err
		}
	}
	return rp, nil
}

// allow takes one report from this minute's allowance.
func (rp *reporter) allow(now time.Time) bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if now.Sub(rp.windowStart) >= time.Minute {
		rp.windowStart, rp.inWindow = now, 0
	}
	if rp.inWindow >= rp.perMinute {
		return false
	}
	rp.inWindow++
	return true
}

// cspReport is the report-uri form ({"csp-report":{…}}).
type cspReport struct {
	Report struct {
		DocumentURI        string `json:"document-uri"`
		ViolatedDirective  string `json:"violated-directive"`
		EffectiveDirective string `json:"effective-directive"`
		BlockedURI         string `json:"blocked-uri"`
		SourceFile         string `json:"source-file"`
		LineNumber         int    `json:"line-number"`
	} `json:"csp-report"`
}

// reportTo is one report of the Reporting API form (a JSON array).
type reportTo struct {
	Type string `json:"type"`
	Body struct {
		DocumentURL        string `json:"documentURL"`
		EffectiveDirective string `json:"effectiveDirective"`
		BlockedURL         string `json:"blockedURL"`
		SourceFile         string `json:"sourceFile"`
		LineNumber         int    `json:"lineNumber"`
	} `json:"body"`
}

func (rp *reporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := rp.serve(r); err != nil {
		result := "invalid"
		if errs.CodeOf(err) == errs.RateLimited {
			result = "rate_limited"
			w.Header().Set("Retry-After", "60")
		}
		rp.counter.WithLabelValues(result).Inc()
		httpapi.WriteError(w, r, rp.opts.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rp *reporter) serve(r *http.Request) error {
	if !rp.allow(time.Now()) {
		return errs.E(errs.RateLimited, "too many CSP reports; try later")
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errs.Wrap(err, errs.TooLarge, "a CSP report is at most %d bytes", maxReportBody)
		}
		return errs.Wrap(err, errs.Invalid, "reading the report")
	}
	log := func(doc, directive, blocked, source string, line int) {
		rp.counter.WithLabelValues("logged").Inc()
		rp.opts.Logger.WarnContext(r.Context(), "csp violation", "document", cut(doc), "directive", cut(directive),
			"blocked", cut(blocked), "source", cut(source), "line", line, "client", httpapi.ClientIP(r))
	}
	switch mt {
	case "application/csp-report", "application/json":
		var rep cspReport
		if err := json.Unmarshal(body, &rep); err != nil || rep.Report.DocumentURI == "" {
			return errs.E(errs.Invalid, "not a CSP report")
		}
		d := rep.Report.EffectiveDirective
		if d == "" {
			d = rep.Report.ViolatedDirective
		}
		log(rep.Report.DocumentURI, d, rep.Report.BlockedURI, rep.Report.SourceFile, rep.Report.LineNumber)
	case "application/reports+json":
		var reps []reportTo
		if err := json.Unmarshal(body, &reps); err != nil || len(reps) == 0 {
			return errs.E(errs.Invalid, "not a list of reports")
		}
		for _, rep := range reps {
			if rep.Type == "csp-violation" {
				log(rep.Body.DocumentURL, rep.Body.EffectiveDirective, rep.Body.BlockedURL, rep.Body.SourceFile, rep.Body.LineNumber)
			}
		}
	default:
		return errs.E(errs.Invalid, "content type must be application/csp-report or application/reports+json, not %q", mt)
	}
	return nil
}

func cut(s string) string {
	if len(s) > maxField {
		return s[:maxField] + "…"
	}
	return s
}
