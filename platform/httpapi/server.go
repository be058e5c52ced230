// Package httpapi is the HTTP layer every audiomill service shares: a gorilla/mux
// router behind middleware for request ids, access logs, metrics, panic
// recovery and body limits; /healthz, /readyz and /metrics; and the one
// mapping of error codes to HTTP statuses and JSON error bodies.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults for Options left zero.
const (
	DefaultMaxBodyBytes      = 1 << 20 // 1 MiB for every route that does not ask for more
	DefaultReadyTimeout      = 1500 * time.Millisecond
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// Options configure a Server.
type Options struct {
	// Name is the service name, shown by /healthz.
	Name string
	// Host is the address to bind ("127.0.0.1", "0.0.0.0"); Port 0 means an
	// ephemeral port, read back with Server.Port after Open.
	Host string
	Port int
	// Logger receives access lines and errors.
	Logger *slog.Logger
	// Registry collects the service's metrics; nil makes a new one with the
	// Go and process collectors.
	Registry *prometheus.Registry
	// MaxBodyBytes is the default request body limit (DefaultMaxBodyBytes when 0).
	MaxBodyBytes int64
	// ReadyTimeout bounds the checks of one /readyz call (DefaultReadyTimeout when 0).
	ReadyTimeout time.Duration
	// BodyMinRate (bytes per second) and BodyRateWindow bound how slowly a
	// request body may arrive: each window must bring BodyMinRate×BodyRateWindow
	// bytes or the end of the body, or reading it fails (errs.Invalid) and the
	// connection closes. Zero enforces no rate; the services get
	// DefaultBodyMinRate and DefaultBodyRateWindow (service.ReadBase).
	BodyMinRate    int64
	BodyRateWindow time.Duration
	// TrustedProxies are the peers whose X-Real-IP / X-Forwarded-For name
	// the client (ClientIP); nil trusts DefaultTrustedProxies (loopback).
	TrustedProxies TrustedProxies
}

// Server is a service's HTTP server. Open binds the port (so a taken port
// fails at start), Serve serves, Shutdown drains.
type Server struct {
	name         string
	logger       *slog.Logger
	registry     *prometheus.Registry
	router       *mux.Router
	srv          *http.Server
	addr         string
	readyTimeout time.Duration
	maxBody      int64
	started      time.Time

	mu         sync.RWMutex
	checks     []Check
	bodyLimits map[*mux.Route]int64

	ln net.Listener
}

// New returns a Server with the health routes in place; add the service's
// routes to Router() before Serve.
func New(opts Options) *Server {
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.TrustedProxies == nil {
		opts.TrustedProxies = DefaultProxies()
	}
	s := &Server{
		name:         opts.Name,
		logger:       opts.Logger,
		registry:     opts.Registry,
		router:       mux.NewRouter(),
		addr:         net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)),
		readyTimeout: opts.ReadyTimeout,
		maxBody:      opts.MaxBodyBytes,
		started:      time.Now(),
		bodyLimits:   map[*mux.Route]int64{},
	}
	s.router.NotFoundHandler = notFound(s.logger)
	s.router.MethodNotAllowedHandler = methodNotAllowed(s.logger)
	s.router.Use(nameRoute, s.limitBody)
	s.router.HandleFunc("/healthz", s.alive).Methods(http.MethodGet, http.MethodHead)
	s.router.HandleFunc("/readyz", s.ready).Methods(http.MethodGet, http.MethodHead)
	s.router.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})).Methods(http.MethodGet)

	metrics := newHTTPMetrics(s.registry)
	var h http.Handler = s.router
	h = minBodyRate(opts.BodyMinRate, opts.BodyRateWindow, s.logger, h)
	h = recoverPanics(s.logger, h)
	h = observe(s.logger, metrics, h)
	h = withRequestID(h)
	h = withClientAddr(opts.TrustedProxies, h)
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Router is where a service adds its routes.
func (s *Server) Router() *mux.Router { return s.router }

// Registry is where a service registers its own metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// AddCheck adds a dependency that /readyz pings.
func (s *Server) AddCheck(c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, c)
}

// ReadinessNote says in words what /readyz checks, for an operator (the
// note of the instance's check in Consul): the dependencies it pings, the
// optional ones apart.
func (s *Server) ReadinessNote() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var required, optional []string
	for _, c := range s.checks {
		if c.Optional {
			optional = append(optional, c.Name)
		} else {
			required = append(required, c.Name)
		}
	}
	note := "GET /readyz: 200 while the process serves"
	if len(required) > 0 {
		note += " and " + strings.Join(required, ", ") + " answer"
	}
	if len(optional) > 0 {
		note += "; " + strings.Join(optional, ", ") + " may be away for a while (degraded, still 200)"
	}
	return note + "; otherwise 503 and the edge stops sending here"
}

// SetBodyLimit gives route its own request body limit instead of the
// server's default (for uploads).
func (s *Server) SetBodyLimit(route *mux.Route, limit int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodyLimits[route] = limit
}

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := s.maxBody
		if cur := mux.CurrentRoute(r); cur != nil {
			s.mu.RLock()
			if l, ok := s.bodyLimits[cur]; ok {
				limit = l
			}
			s.mu.RUnlock()
		}
		LimitBody(limit, s.logger, next).ServeHTTP(w, r)
	})
}

// Open binds the listening socket. A taken port is an error here, before
// anything is registered anywhere.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Port returns the bound port (the real one when Options.Port was 0). Valid after Open.
func (s *Server) Port() int {
	return s.ln.Addr().(*net.TCPAddr).Port
}

// Addr returns the bound address. Valid after Open.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown; it returns nil after a Shutdown.
func (s *Server) Serve() error {
	if s.ln == nil {
		return errors.New("httpapi: Serve before Open")
	}
	if err := s.srv.Serve(s.ln); err != nil && !isClosed(err) {
		return fmt.Errorf("serve on %s: %w", s.addr, err)
	}
	return nil
}

// OnShutdown registers f to run, in a goroutine of its own, when Shutdown
// starts: for handlers that hold a response open (event streams), which
// the drain would otherwise wait for until its timeout. f runs once, however
// many times Shutdown is called (net/http runs the hooks on every call).
func (s *Server) OnShutdown(f func()) { s.srv.RegisterOnShutdown(sync.OnceFunc(f)) }

// Shutdown stops accepting connections and waits, until ctx ends, for
// in-flight requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
