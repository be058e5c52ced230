package webapp

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type limits map[*mux.Route]int64

func (l limits) SetBodyLimit(r *mux.Route, n int64) { l[r] = n }

func newSite(t *testing.T, perMinute int) (*Site, http.Handler, *bytes.Buffer, *prometheus.Registry) {
	t.Helper()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	s, err := New(Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Registerer: reg, ReportsPerMinute: perMinute})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	l := limits{}
	s.Register(r, l)
	// The server applies the route's limit (httpapi.Server); here by hand.
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.Body = http.MaxBytesReader(w, req.Body, maxReportBody)
		r.ServeHTTP(w, req)
	})
	return s, h, &logs, reg
}

func TestPageAndAssets(t *testing.T) {
	s, h, _, _ := newSite(t, 0)
	for _, p := range []string{"/", "/verify"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		body := rec.Body.String()
		if rec.Code != 200 || rec.Header().Get("Content-Security-Policy") != CSP || rec.Header().Get("Cache-Control") != "no-cache" ||
			!strings.Contains(body, "/app/"+s.Version()+"/main.js") || strings.Contains(body, versionPlaceholder) {
			t.Fatalf("GET %s = %d %v", p, rec.Code, rec.Header())
		}
		if regexp.MustCompile(`style=|<script>|\son[a-z]+=`).MatchString(body) {
			t.Errorf("%s holds inline script or style", p)
		}
		etag := rec.Header().Get("ETag")
		req := httptest.NewRequest(http.MethodGet, p, nil)
		req.Header.Set("If-None-Match", etag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag = %d, want 304", p, rec.Code)
		}
	}
	for file, ct := range map[string]string{"main.js": "application/javascript", "app.css": "text/css", "vendor/tus.min.js": "application/javascript"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app/"+s.Version()+"/"+file, nil))
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), ct) ||
			rec.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" || rec.Header().Get("ETag") == "" {
			t.Errorf("GET %s = %d %v", file, rec.Code, rec.Header())
		}
	}
	for _, p := range []string{"/app/0123456789abcdef/main.js", "/app/" + s.Version() + "/nope.js", "/app/" + s.Version() + "/../index.html"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code == 200 {
			t.Errorf("GET %s = 200", p)
		}
	}
}

func post(h http.Handler, ct, body string) int {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, ReportsPath, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	h.ServeHTTP(rec, req)
	return rec.Code
}

const legacyReport = `{"csp-report":{"document-uri":"http://x/","violated-directive":"script-src","blocked-uri":"inline"}}`

func TestCSPReports(t *testing.T) {
	s, h, logs, _ := newSite(t, 100)
	if st := post(h, "application/csp-report", legacyReport); st != http.StatusNoContent {
		t.Fatalf("a report = %d", st)
	}
	if !strings.Contains(logs.String(), `"msg":"csp violation"`) || !strings.Contains(logs.String(), `"directive":"script-src"`) {
		t.Errorf("report not logged: %s", logs)
	}
	modern := `[{"type":"csp-violation","body":{"documentURL":"http://x/","effectiveDirective":"style-src-elem","blockedURL":"inline"}}]`
	if st := post(h, "application/reports+json", modern); st != http.StatusNoContent {
		t.Errorf("a Reporting API report = %d", st)
	}
	// Bad input: 400 with a code, logged, counted; too large: 413.
	for _, c := range []struct{ ct, body string }{
		{"text/plain", legacyReport}, {"application/csp-report", "{"}, {"application/csp-report", `{"other":1}`},
		{"application/reports+json", `[]`},
	} {
		logs.Reset()
		if st := post(h, c.ct, c.body); st != http.StatusBadRequest || !strings.Contains(logs.String(), `"code":"invalid"`) {
			t.Errorf("%s %q = %d (log %s), want 400 invalid", c.ct, c.body, st, logs)
		}
	}
	if st := post(h, "application/csp-report", strings.Repeat("x", maxReportBody+1)); st != http.StatusRequestEntityTooLarge {
		t.Errorf("an oversized report = %d, want 413", st)
	}
	n := func(result string) float64 { return testutil.ToFloat64(s.reports.counter.WithLabelValues(result)) }
	if n("logged") != 2 || n("invalid") != 5 {
		t.Errorf("counted logged %v invalid %v", n("logged"), n("invalid"))
	}
}

func TestCSPReportsRateLimited(t *testing.T) {
	s, h, _, _ := newSite(t, 2)
	for i, want := range []int{204, 204, 429, 429} {
		if st := post(h, "application/csp-report", legacyReport); st != want {
			t.Errorf("report %d = %d, want %d", i+1, st, want)
		}
	}
	if got := testutil.ToFloat64(s.reports.counter.WithLabelValues("rate_limited")); got != 2 {
		t.Errorf("rate_limited counted %v", got)
	}
}
