// Package web is filestorage's HTTP API under /v1: one-shot streaming
// uploads, downloads with ranges and validators, the folder view, moves,
// deletes, bucket statistics, and tus 1.0.0 resumable uploads. It speaks to
// a store.Backend and enforces who may touch what, the object size limit
// and the per-owner quota.
package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// The scopes of the file-storage API: every request needs a token with one
// of them (auth gives StorageScope to service accounts configured with it
// and to users an admin granted the role storage; a service acting for
// users gets bucket scopes, authn.StorageBucketScope).
const (
	// StorageScope lets a token store and read the files of its subject.
	StorageScope = authn.StorageScope
	// AdminScope lets a token touch every file, whoever owns it.
	AdminScope = authn.StorageAdminScope
)

// The operations of the API's routes, as bucket scopes name them
// ("storage:<op>:<bucket>"): a route of operation op in bucket b is open
// to a token with the scope StorageBucketScope(op, b).
const (
	// OpRead: downloads and stats (by path or id) and the folder view.
	OpRead = authn.StorageRead
	// OpWrite: uploads (one-shot and tus) and moves.
	OpWrite = authn.StorageWrite
	// OpDelete: deletes (by path, folder or id).
	OpDelete = authn.StorageDelete
)

// Defaults of Limits.
const (
	DefaultMaxObjectSize = 2 << 30
	DefaultQuota         = 10 << 30
	DefaultUploadTTL     = 24 * time.Hour
	DefaultSweepInterval = 10 * time.Minute
	// DefaultMaxBucketsPerOwner is Limits.MaxBucketsPerOwner's default.
	DefaultMaxBucketsPerOwner = 16
)

// Limits bound what callers may store.
type Limits struct {
	// MaxObjectSize is the largest file, in bytes.
	MaxObjectSize int64
	// Quota is how many bytes one owner's files may take in total (0: no
	// quota). Tokens with AdminScope are not subject to it.
	Quota int64
	// MaxBucketsPerOwner is how many buckets one owner may store files
	// into (0: no cap); store.Backend.ClaimBucket says what counts. Tokens
	// with AdminScope are not subject to it.
	MaxBucketsPerOwner int
}

// Caller is who makes a request, as far as files are concerned.
type Caller struct {
	// Owner is recorded on the files the caller uploads; a caller with
	// Own touches the files with this owner.
	Owner string
	// Own is set when the caller may touch Owner's files: its own with
	// scope storage, or those of the owner it names with a write scope
	// of the request's bucket. A caller that names an owner for a read or
	// a delete touches only the files of its Buckets.
	Own bool
	// Admin callers touch every file.
	Admin bool
	// OnBehalf is set when the caller names the owner (OwnerHeader): its
	// uploads belong to, and count against the quota of, that owner.
	OnBehalf bool
	// Buckets are where the caller touches every owner's files for the
	// request's operation (read or delete), by its bucket scopes; on a
	// route of one bucket, that bucket at most.
	Buckets []string
	// Uncapped is set when the caller stores for an owner by a write
	// scope of the bucket: the scope, not the owner, chose the bucket, so
	// it does not count against Limits.MaxBucketsPerOwner.
	Uncapped bool
}

// OwnerHeader lets a storage:admin token, or one with a bucket scope (a
// service acting for a user), name the owner of the files it uploads.
const OwnerHeader = "X-Owner"

// maxOwnerLen bounds an owner named in OwnerHeader.
const maxOwnerLen = 256

// quotaExempt reports whether c's uploads skip the per-owner quota: an
// admin's own files do, files it stores for an owner do not.
func (c Caller) quotaExempt() bool { return c.Admin && !c.OnBehalf }

// may reports whether c may touch f.
func (c Caller) may(f store.File) bool {
	return c.Admin || c.Own && f.Owner == c.Owner || slices.Contains(c.Buckets, f.Bucket)
}

// every reports whether c sees every owner's files in bucket.
func (c Caller) every(bucket string) bool { return c.Admin || slices.Contains(c.Buckets, bucket) }

// replace is whose file c's uploads may replace at their path: anyone's
// for an admin, else only c's own (checked again when the upload commits).
func (c Caller) replace() store.ReplacePolicy {
	if c.Admin {
		return store.ReplaceAny
	}
	return store.ReplaceOwn
}

// CallerOf is the one place where a request's verified token becomes a
// Caller for a route of operation op (OpRead, OpWrite, OpDelete; "" for a
// route of none, GET /v1/buckets): its subject is the owner, scope
// storage:admin makes it an admin, and its bucket scopes for op open the
// route's bucket (or, on a route by id, the buckets they name). The authn
// middleware must have run; without a principal the request is
// unauthorized, and a token with none of these scopes is forbidden: the
// API is for internal apps, not for every signed-up user.
func CallerOf(r *http.Request, op string) (Caller, error) {
	p, ok := authn.FromContext(r.Context())
	if !ok || p.Subject == "" {
		return Caller{}, errs.E(errs.Unauthorized, "a bearer token is required")
	}
	admin, own := p.HasScope(AdminScope), p.HasScope(StorageScope)
	var grants []string
	bucket, onBucket := mux.Vars(r)["bucket"]
	if op != "" {
		grants = p.StorageBuckets(op)
		if onBucket {
			grants = slices.DeleteFunc(grants, func(b string) bool { return b != bucket })
		}
	}
	if !admin && !own && len(grants) == 0 {
		what := "a scope " + authn.StorageBucketScope(op, "<bucket>") + " for the bucket"
		switch {
		case op == "":
			what = "nothing else"
		case onBucket:
			what = authn.StorageBucketScope(op, bucket)
		}
		return Caller{}, errs.E(errs.Forbidden, "the token lacks scope %s (or %s, or %s): the file-storage API is for internal apps and for users an admin granted the role storage",
			StorageScope, AdminScope, what)
	}
	c := Caller{Owner: p.Subject, Own: own || admin, Admin: admin}
	if op != OpWrite {
		c.Buckets = grants
	}
	owner, named := r.Header[http.CanonicalHeaderKey(OwnerHeader)]
	switch {
	case !named && !admin && !own:
		if op == OpWrite {
			return Caller{}, errs.E(errs.Forbidden, "scope %s stores files for an owner: name the owner in %s",
				authn.StorageBucketScope(op, bucket), OwnerHeader)
		}
		return c, nil
	case !named:
		return c, nil
	case !admin && len(grants) == 0:
		return Caller{}, errs.E(errs.Forbidden, "only a token with scope %s (or a bucket scope for the request) may name an owner (%s)", AdminScope, OwnerHeader)
	}
	if len(owner) != 1 || !validOwner(owner[0]) {
		return Caller{}, errs.E(errs.Invalid, "%s must be one owner id of 1 to %d printable characters", OwnerHeader, maxOwnerLen)
	}
	c.Owner, c.OnBehalf = owner[0], true
	if !admin {
		// A bucket scope acts for the owner in its bucket only: writes
		// touch that owner's files there; reads and deletes reach files
		// through Buckets, never through the named owner.
		c.Own, c.Uncapped = op == OpWrite, op == OpWrite
	}
	return c, nil
}

func validOwner(s string) bool {
	if s == "" || len(s) > maxOwnerLen {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || !utf8.ValidRune(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// Options configure the API.
type Options struct {
	Backend store.Backend
	Limits  Limits
	Logger  *slog.Logger
	// Authenticate verifies each request's token and puts its principal in
	// the context (authn.Middleware).
	Authenticate func(http.Handler) http.Handler
}

// API serves the routes.
type API struct {
	backend store.Backend
	limits  Limits
	logger  *slog.Logger
}

// BodyLimiter gives a route its own request body limit (httpapi.Server).
type BodyLimiter interface {
	SetBodyLimit(route *mux.Route, limit int64)
}

// Route is one method and path template the API serves.
type Route struct{ Method, Path string }

// Register adds the API's routes to r (and their body limits to bl).
func Register(r *mux.Router, bl BodyLimiter, opts Options) *API {
	if opts.Limits.MaxObjectSize <= 0 {
		opts.Limits.MaxObjectSize = DefaultMaxObjectSize
	}
	a := &API{backend: opts.Backend, limits: opts.Limits, logger: opts.Logger}
	// Paths are the API's own business: ".." in a file path is refused
	// with a 400, not cleaned and redirected.
	r.SkipClean(true)
	v1 := r.PathPrefix("/v1").Subrouter()
	h := func(op string, f func(http.ResponseWriter, *http.Request, Caller) error) http.Handler {
		return opts.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := CallerOf(r, op)
			if err == nil {
				err = f(w, r, c)
			}
			if err != nil {
				a.writeError(w, r, err)
			}
		}))
	}
	var registered []*mux.Route
	for _, rt := range a.routes(h) {
		route := v1.Handle(rt.path, rt.handler).Methods(rt.methods...)
		if rt.upload {
			bl.SetBodyLimit(route, a.limits.MaxObjectSize)
		}
		registered = append(registered, route)
	}
	// Anything else under /v1: a path that tries to climb out (a ".."
	// segment, decoded or not) is a 400, like every traversal attempt;
	// the rest is an unknown route.
	v1.PathPrefix("/").Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.unmatched(r, registered); err != nil {
			a.writeError(w, r, err)
		}
	}))
	return a
}

// unmatched explains a request no route took: a path that climbs out is a
// 400, a known path with another method a 405, anything else a 404.
func (a *API) unmatched(r *http.Request, registered []*mux.Route) error {
	for seg := range strings.SplitSeq(r.URL.Path, "/") {
		if seg == ".." || seg == "." || strings.ContainsFunc(seg, unicode.IsControl) {
			return errs.E(errs.Invalid, "the request path has a %q segment or a control character", seg)
		}
	}
	for _, route := range registered {
		var m mux.RouteMatch
		if !route.Match(r, &m) && errors.Is(m.MatchErr, mux.ErrMethodMismatch) {
			return withStatus(http.StatusMethodNotAllowed, errs.E(errs.Invalid, "method %s is not allowed on %s", r.Method, r.URL.Path))
		}
	}
	return errs.E(errs.NotFound, "no route for %s %s", r.Method, r.URL.Path)
}

type route struct {
	methods []string
	path    string
	handler http.Handler
	upload  bool
}

// filePath's pattern also matches control characters, so that they reach
// path validation (a 400) instead of missing the route (a 404).
const filePath = `/buckets/{bucket}/files/{path:[\s\S]+}`

func (a *API) routes(h func(string, func(http.ResponseWriter, *http.Request, Caller) error) http.Handler) []route {
	return []route{
		{methods: []string{http.MethodGet}, path: "/buckets", handler: h("", a.buckets)},
		{methods: []string{http.MethodGet}, path: "/buckets/{bucket}/files", handler: h(OpRead, a.list)},
		{methods: []string{http.MethodPut}, path: filePath, handler: h(OpWrite, a.put), upload: true},
		{methods: []string{http.MethodGet, http.MethodHead}, path: filePath, handler: h(OpRead, a.getByPath)},
		{methods: []string{http.MethodDelete}, path: filePath, handler: h(OpDelete, a.deleteByPath)},
		{methods: []string{http.MethodGet, http.MethodHead}, path: "/files/{id}", handler: h(OpRead, a.getByID)},
		{methods: []string{http.MethodDelete}, path: "/files/{id}", handler: h(OpDelete, a.deleteByID)},
		{methods: []string{http.MethodPost}, path: "/buckets/{bucket}/move", handler: h(OpWrite, a.move)},
		{methods: []string{http.MethodOptions}, path: "/buckets/{bucket}/uploads", handler: http.HandlerFunc(a.tusOptions)},
		{methods: []string{http.MethodOptions}, path: "/buckets/{bucket}/uploads/", handler: http.HandlerFunc(a.tusOptions)},
		{methods: []string{http.MethodPost}, path: "/buckets/{bucket}/uploads", handler: h(OpWrite, a.tusCreate), upload: true},
		{methods: []string{http.MethodPost}, path: "/buckets/{bucket}/uploads/", handler: h(OpWrite, a.tusCreate), upload: true},
		{methods: []string{http.MethodHead}, path: "/buckets/{bucket}/uploads/{id}", handler: h(OpWrite, a.tusHead)},
		{methods: []string{http.MethodPatch}, path: "/buckets/{bucket}/uploads/{id}", handler: h(OpWrite, a.tusPatch), upload: true},
		{methods: []string{http.MethodDelete}, path: "/buckets/{bucket}/uploads/{id}", handler: h(OpWrite, a.tusDelete)},
	}
}

// Routes lists every method and path the API serves (for the OpenAPI
// document's test).
func Routes() []Route {
	a := &API{}
	var out []Route
	for _, rt := range a.routes(func(string, func(http.ResponseWriter, *http.Request, Caller) error) http.Handler { return nil }) {
		for _, m := range rt.methods {
			out = append(out, Route{Method: m, Path: "/v1" + rt.path})
		}
	}
	return out
}

// withStatus is httpapi.WithStatus: an error answered with a status of its
// own (412, 415, 416, 460).
func withStatus(status int, err *errs.Error) error { return httpapi.WithStatus(status, err) }

// writeError answers err through httpapi's one mapping of codes to
// statuses (a withStatus error with its own).
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && !errs.IsCoded(err) {
		// The client went away mid-request: not the server's fault.
		err = errs.Wrap(err, errs.Invalid, "the request was cancelled by the client")
	}
	httpapi.WriteError(w, r, a.logger, err)
}

// Sweep deletes expired resumable uploads every interval until ctx ends.
func (a *API) Sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := a.SweepOnce(ctx, time.Now()); err != nil {
			a.logger.Warn("sweep of expired uploads failed", "err", err.Error())
		} else if n > 0 {
			a.logger.Info("expired uploads deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepOnce deletes the uploads expired at now and returns how many.
func (a *API) SweepOnce(ctx context.Context, now time.Time) (int, error) {
	ids, err := a.backend.ExpiredUploads(ctx, now)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if err := a.backend.DeleteUpload(ctx, id); err != nil && errs.CodeOf(err) != errs.NotFound {
			return n, err
		}
		n++
	}
	return n, nil
}
