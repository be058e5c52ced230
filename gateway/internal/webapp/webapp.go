// Package webapp serves audiomill's web page from the gateway: index.html at
// / (and at /verify, the landing of the verification link), its scripts and
// styles under /app/<version>/, all embedded in the binary (go:embed), under
// a strict Content-Security-Policy whose violation reports it takes at
// POST /api/v1/csp-reports (docs/gateway.md "The web page").
//
// The gateway serves the page rather than a service of its own: it is the
// API's origin (no CORS, and the session cookie's SameSite=Strict and Path
// hold), the files are a few tens of KiB, and it is one service fewer to
// register, route and secure.
package webapp

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

//go:embed static
var static embed.FS

// versionPlaceholder is what index.html says where the assets' version goes.
const versionPlaceholder = "/app/_/"

// ReportsPath is where browsers send CSP violation reports.
const ReportsPath = "/api/v1/csp-reports"

// CSP is the page's Content-Security-Policy: nothing inline, nothing from
// another origin.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; " +
	"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; " +
	"report-uri " + ReportsPath + "; report-to csp"

// BodyLimiter gives a route its own request body limit (httpapi.Server).
type BodyLimiter interface {
	SetBodyLimit(route *mux.Route, limit int64)
}

// Options configure the site.
type Options struct {
	Logger *slog.Logger
	// Registerer takes the CSP report metric (none when nil).
	Registerer prometheus.Registerer
	// ReportsPerMinute bounds the CSP reports logged a minute by this
	// replica (DefaultReportsPerMinute when zero); beyond, 429.
	ReportsPerMinute int
}

// Site is the embedded page.
type Site struct {
	version string
	index   []byte
	assets  map[string][]byte // by path under app/
	etags   map[string]string
	modTime time.Time
	reports *reporter
	logger  *slog.Logger
}

// New reads the embedded files and versions them: the version is a hash of
// every file, so a changed file changes every asset URL and the immutable
// caching of the old ones never serves stale code.
func New(opts Options) (*Site, error) {
	s := &Site{assets: map[string][]byte{}, etags: map[string]string{}, modTime: time.Now().Truncate(time.Second), logger: opts.Logger}
	var names []string
	err := fs.WalkDir(static, "static/app", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webapp: list the embedded files: %w", err)
	}
	sort.Strings(names)
	all := sha256.New()
	for _, p := range names {
		b, err := static.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("webapp: read %s: %w", p, err)
		}
		rel := strings.TrimPrefix(p, "static/app/")
		s.assets[rel] = b
		sum := sha256.Sum256(b)
		s.etags[rel] = `"` + hex.EncodeToString(sum[:8]) + `"`
		fmt.Fprintf(all, "%s\x00%x\x00", rel, sum)
	}
	s.version = hex.EncodeToString(all.Sum(nil))[:16]
	index, err := static.ReadFile("static/index.html")
	if err != nil {
		return nil, fmt.Errorf("webapp: read index.html: %w", err)
	}
	s.index = bytes.ReplaceAll(index, []byte(versionPlaceholder), []byte("/app/"+s.version+"/"))
	sum := sha256.Sum256(s.index)
	s.etags[""] = `"` + hex.EncodeToString(sum[:8]) + `"`
	s.reports, err = newReporter(opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Version is the assets' version, the directory under /app/.
func (s *Site) Version() string { return s.version }

// Register adds the page's routes to r.
func (s *Site) Register(r *mux.Router, bl BodyLimiter) {
	r.HandleFunc("/", s.serveIndex).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/verify", s.serveIndex).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/app/{version}/{file:.+}", s.serveAsset).Methods(http.MethodGet, http.MethodHead)
	reports := r.Handle(ReportsPath, s.reports).Methods(http.MethodPost)
	bl.SetBodyLimit(reports, maxReportBody)
}

// pageHeaders are the headers of the page and of its assets.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("Reporting-Endpoints", `csp="`+ReportsPath+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// serveIndex serves index.html: revalidated on every load (no-cache, with
// an ETag), so a new version's asset URLs are seen at once.
func (s *Site) serveIndex(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", s.etags[""])
	http.ServeContent(w, r, "index.html", s.modTime, bytes.NewReader(s.index))
}

// serveAsset serves /app/<version>/<file>: cached for a year, immutable.
// Another version's URL is 404 (JSON), never this version's bytes under an
// immutable old name.
func (s *Site) serveAsset(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	b, ok := s.assets[v["file"]]
	if v["version"] != s.version || !ok {
		w.Header().Set("Cache-Control", "no-store")
		httpapi.WriteError(w, r, s.logger, errs.E(errs.NotFound, "no such asset"))
		return
	}
	pageHeaders(w.Header())
	w.Header().Set("Content-Type", contentType(v["file"]))
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("ETag", s.etags[v["file"]])
	http.ServeContent(w, r, v["file"], s.modTime, bytes.NewReader(b))
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "application/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".md", ".LICENSE":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}
