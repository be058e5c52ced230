// Package service runs an audiomill service: it reads the common
// configuration, builds the logger and HTTP server, lets the service wire its
// own dependencies and routes, listens, registers in Consul, and on SIGTERM
// deregisters, drains in-flight requests and closes its clients, in that order.
//
// Every service has the same shape: its internal/app package holds Spec,
// Config, ReadConfig and Wire, and its main is only:
//
//	func main() {
//		os.Exit(service.Run(app.Spec(version)))
//	}
//
// A program's subcommands ("auth rotate-keys") are Spec.Commands, which Run
// dispatches on its first argument.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/logging"
)

// Defaults of the variables every service reads.
const (
	DefaultHost            = "127.0.0.1"
	DefaultConsulAddr      = "127.0.0.1:8500"
	DefaultLogLevel        = "info"
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultShutdownDelay covers the edge's re-render after a deregistration
	// (consul-template's wait of 1–4 s, then an nginx reload).
	DefaultShutdownDelay = 5 * time.Second
	deregisterTimeout    = 3 * time.Second
)

// Spec describes one service to Run.
type Spec struct {
	// Name is the service's name in Consul and in the logs.
	Name string
	// Version goes to Consul's meta.version (set at build time with -ldflags).
	Version string
	// DefaultPort is the port when PORT is unset (PORT=0 means ephemeral).
	DefaultPort int
	// Unrouted says nothing sends the service requests found through Consul
	// (it only consumes messages): SHUTDOWN_DELAY then defaults to 0.
	Unrouted bool
	// Wire builds the service's dependencies and routes on app. It reads its
	// own variables through app.Env (their errors are reported together with
	// the common ones), adds routes to app.Server.Router(), readiness checks
	// with app.Server.AddCheck and clean-up with app.OnClose. It must not
	// block: background work starts from goroutines bound to ctx.
	Wire func(ctx context.Context, app *App) error
	// Commands are the program's subcommands: with one named as its first
	// argument, Run runs that command instead of the service. A program
	// with Commands refuses any other first argument (exit 2).
	Commands []Command
}

// Command is a subcommand of a service's program, such as "auth rotate-keys".
type Command struct {
	// Name is the first argument that runs it.
	Name string
	// Run reads its variables with env, writes its report to out and its
	// errors to errOut, and returns the process exit code (2 for an invalid
	// configuration). ctx is cancelled on SIGINT or SIGTERM.
	Run func(ctx context.Context, env func(string) string, out, errOut io.Writer) int
}

// Base is the configuration every service reads.
type Base struct {
	Host            string        // BIND_ADDR: address to listen on
	Port            int           // PORT: 0 means an ephemeral port
	AdvertiseAddr   string        // ADVERTISE_ADDR: address registered in Consul
	ConsulAddr      string        // CONSUL_HTTP_ADDR
	ConsulToken     string        // CONSUL_HTTP_TOKEN: the instance's ACL token (docs/security.md)
	LogLevel        string        // LOG_LEVEL
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long in-flight requests may take to finish
	ShutdownDelay   time.Duration // SHUTDOWN_DELAY: serving on after deregistering, until callers stop sending
	MaxBodyBytes    int64         // MAX_BODY_BYTES: default request body limit
	BodyMinRate     int64         // BODY_MIN_RATE: slowest a request body may arrive, bytes/s (0: no bound)
	BodyRateWindow  time.Duration // BODY_RATE_WINDOW: the window BODY_MIN_RATE is measured over
	Tags            []string      // SERVICE_TAGS
	ID              string        // SERVICE_ID: unique instance id (default name-host-port)
	// TrustedProxies (TRUSTED_PROXIES, CIDRs) are the peers whose
	// X-Real-IP / X-Forwarded-For name the client (httpapi.ClientIP).
	TrustedProxies httpapi.TrustedProxies
}

// ReadBase reads the common variables with spec's defaults.
func ReadBase(r *config.Reader, spec Spec) Base {
	delay := DefaultShutdownDelay
	if spec.Unrouted {
		delay = 0
	}
	b := Base{
		Host:            r.String("BIND_ADDR", DefaultHost),
		Port:            r.Port("PORT", spec.DefaultPort),
		ConsulAddr:      r.String("CONSUL_HTTP_ADDR", DefaultConsulAddr),
		ConsulToken:     r.String("CONSUL_HTTP_TOKEN", ""),
		LogLevel:        r.Enum("LOG_LEVEL", DefaultLogLevel, "debug", "info", "warn", "error"),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout),
		ShutdownDelay:   r.Duration("SHUTDOWN_DELAY", delay),
		MaxBodyBytes:    r.Int64("MAX_BODY_BYTES", httpapi.DefaultMaxBodyBytes),
		BodyMinRate:     r.Int64("BODY_MIN_RATE", httpapi.DefaultBodyMinRate),
		BodyRateWindow:  r.Duration("BODY_RATE_WINDOW", httpapi.DefaultBodyRateWindow),
		Tags:            r.List("SERVICE_TAGS", nil),
		ID:              r.String("SERVICE_ID", ""),
	}
	proxies, err := httpapi.ParseTrustedProxies(r.List("TRUSTED_PROXIES", strings.Split(httpapi.DefaultTrustedProxies, ",")))
	if err != nil {
		r.Fail("TRUSTED_PROXIES", "%v", err)
	}
	b.TrustedProxies = proxies
	if b.BodyMinRate < 0 {
		r.Fail("BODY_MIN_RATE", "%d is negative (0 turns the bound off)", b.BodyMinRate)
	}
	if b.BodyMinRate > 0 && b.BodyRateWindow <= 0 {
		r.Fail("BODY_RATE_WINDOW", "must be above 0 while BODY_MIN_RATE is set")
	}
	advertiseDefault := b.Host
	if ip := net.ParseIP(b.Host); b.Host == "" || ip != nil && ip.IsUnspecified() {
		advertiseDefault = "127.0.0.1"
	}
	b.AdvertiseAddr = r.String("ADVERTISE_ADDR", advertiseDefault)
	if b.AdvertiseAddr == AdvertiseAuto {
		ip, err := firstIPv4(net.InterfaceAddrs)
		if err != nil {
			r.Fail("ADVERTISE_ADDR", "auto: %v", err)
		}
		b.AdvertiseAddr = ip
	}
	return b
}

// AdvertiseAuto as ADVERTISE_ADDR registers the host's first non-loopback
// IPv4 address (a container's own address, so replicas scale out).
const AdvertiseAuto = "auto"

// firstIPv4 returns the first non-loopback IPv4 address that addrs lists.
func firstIPv4(addrs func() ([]net.Addr, error)) (string, error) {
	list, err := addrs()
	if err != nil {
		return "", fmt.Errorf("list interface addresses: %w", err)
	}
	for _, a := range list {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("no non-loopback IPv4 address")
}

// App is what a service's Wire builds on.
type App struct {
	Name    string
	Version string
	// Env reads the service's own variables.
	Env *config.Reader
	// Base is the common configuration.
	Base   Base
	Logger *slog.Logger
	Server *httpapi.Server
	// Consul is the agent's API client; Resolver finds other services
	// through it.
	Consul *api.Client

	closers  []closer
	resolver *consul.Resolver
	redis    *redis.Client
}

type closer struct {
	name string
	fn   func(context.Context) error
}

// OnClose registers fn to run at shutdown, after the server has drained;
// closers run in reverse order of registration.
func (a *App) OnClose(name string, fn func(context.Context) error) {
	a.closers = append(a.closers, closer{name, fn})
}

// Main is one running service: Open starts it, Close stops it.
type Main struct {
	spec      Spec
	env       func(string) string
	out       io.Writer
	app       *App
	registrar *consul.Registrar
	cancel    context.CancelFunc
	keepAlive func() // stops the registrar's re-registration and waits for it
	serveErr  chan error
}

// NewMain returns a Main for spec, reading variables with env and logging to out.
func NewMain(spec Spec, env func(string) string, out io.Writer) *Main {
	return &Main{spec: spec, env: env, out: out, serveErr: make(chan error, 1)}
}

// Open reads the configuration, wires the service, listens, starts serving
// and registers in Consul. An invalid configuration or a taken port is an
// error here; an unreachable Consul is not (the registrar keeps trying).
func (m *Main) Open(ctx context.Context) error {
	r := config.NewReader(m.env)
	base := ReadBase(r, m.spec)
	logger, err := logging.New(m.out, base.LogLevel, m.spec.Name)
	if err != nil {
		logger, _ = logging.New(m.out, DefaultLogLevel, m.spec.Name)
	}
	consulClient, err := consul.NewClient(base.ConsulAddr, base.ConsulToken)
	if err != nil {
		r.Fail("CONSUL_HTTP_ADDR", "%v", err)
	}
	m.app = &App{
		Name:    m.spec.Name,
		Version: m.spec.Version,
		Env:     r,
		Base:    base,
		Logger:  logger,
		Consul:  consulClient,
		Server: httpapi.New(httpapi.Options{
			Name: m.spec.Name, Host: base.Host, Port: base.Port, Logger: logger, MaxBodyBytes: base.MaxBodyBytes,
			BodyMinRate: base.BodyMinRate, BodyRateWindow: base.BodyRateWindow, TrustedProxies: base.TrustedProxies,
		}),
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	if m.spec.Wire != nil {
		if err := m.spec.Wire(runCtx, m.app); err != nil {
			m.closeClients()
			return fmt.Errorf("wire %s: %w", m.spec.Name, err)
		}
	}
	if err := r.Err(); err != nil {
		m.closeClients()
		return err
	}

	if err := m.app.Server.Open(); err != nil {
		m.closeClients()
		return err
	}
	go func() { m.serveErr <- m.app.Server.Serve() }()

	port := m.app.Server.Port()
	id := base.ID
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%s-%d", m.spec.Name, host, port)
	}
	m.registrar = consul.NewRegistrar(consulClient, consul.Registration{
		Name:       m.spec.Name,
		ID:         id,
		Address:    base.AdvertiseAddr,
		Port:       port,
		Tags:       base.Tags,
		Version:    m.spec.Version,
		Meta:       map[string]string{"commit": buildCommit(), "started_at": time.Now().UTC().Format(time.RFC3339)},
		CheckURL:   "http://" + net.JoinHostPort(base.AdvertiseAddr, strconv.Itoa(port)) + "/readyz",
		CheckNotes: m.app.Server.ReadinessNote(),
	}, logger)
	if err := m.registrar.Register(ctx); err != nil {
		logger.Warn("consul registration failed; retrying in the background", "err", err.Error())
	}
	keepAliveCtx, stopKeepAlive := context.WithCancel(runCtx)
	keepAliveDone := make(chan struct{})
	m.keepAlive = func() { stopKeepAlive(); <-keepAliveDone }
	go func() {
		defer close(keepAliveDone)
		m.registrar.Run(keepAliveCtx)
	}()

	logger.Info("service started", "addr", m.app.Server.Addr(), "id", id, "version", m.spec.Version,
		"advertise", base.AdvertiseAddr, "consul", base.ConsulAddr)
	return nil
}

// App returns the wired application. Valid after Open.
func (m *Main) App() *App { return m.app }

// Addr returns the address the service listens on. Valid after Open.
func (m *Main) Addr() string { return m.app.Server.Addr() }

// Done delivers the error that stopped the server unexpectedly.
func (m *Main) Done() <-chan error { return m.serveErr }

// Close stops the service in the order that loses no request: deregister from
// Consul (so the edge stops sending), keep serving for SHUTDOWN_DELAY while
// the edge re-renders, then stop listening and drain in-flight requests for up
// to SHUTDOWN_TIMEOUT, then stop background work and close the clients.
func (m *Main) Close() error {
	logger := m.app.Logger
	var errList []error

	// The keep-alive would register the instance again during the delay.
	m.keepAlive()
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	if err := m.registrar.Deregister(ctx); err != nil {
		logger.Warn("consul deregistration failed", "err", err.Error())
	}
	cancel()
	// Whoever routes to us from Consul's list (the edge, resolvers) needs a
	// moment to drop us; until then new requests are still served.
	time.Sleep(m.app.Base.ShutdownDelay)

	ctx, cancel = context.WithTimeout(context.Background(), m.app.Base.ShutdownTimeout)
	defer cancel()
	if err := m.app.Server.Shutdown(ctx); err != nil {
		errList = append(errList, err)
	}
	m.cancel()
	if err := m.closeClients(); err != nil {
		errList = append(errList, err)
	}
	logger.Info("service stopped")
	return errors.Join(errList...)
}

func (m *Main) closeClients() error {
	var errList []error
	for i := len(m.app.closers) - 1; i >= 0; i-- {
		c := m.app.closers[i]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.fn(ctx); err != nil {
			m.app.Logger.Warn("close failed", "client", c.name, "err", err.Error())
			errList = append(errList, fmt.Errorf("close %s: %w", c.name, err))
		}
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	return errors.Join(errList...)
}

// Run runs spec as a process: it starts the service, waits for SIGTERM or
// SIGINT, stops it in order and returns the exit code (0 after a clean stop,
// 1 when it could not start or stopped on an error, 2 on invalid configuration).
// When spec has Commands and the process has an argument, Run runs the
// command it names instead (see RunCommand).
func Run(spec Spec) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(spec.Commands) > 0 && len(os.Args) > 1 {
		return RunCommand(ctx, spec, os.Args[1], os.Getenv, os.Stdout, os.Stderr)
	}

	// The log lines of concurrent requests share writes to stdout.
	out := logging.NewAsyncWriter(os.Stdout)
	defer out.Close()
	m := NewMain(spec, os.Getenv, out)
	if err := m.Open(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Name, err)
		var cfgErr *config.Error
		if errors.As(err, &cfgErr) {
			return 2
		}
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		m.app.Logger.Info("signal received; shutting down")
	case err := <-m.Done():
		m.app.Logger.Error("server stopped unexpectedly", "err", fmt.Sprint(err))
		code = 1
	}
	stop()
	if err := m.Close(); err != nil {
		m.app.Logger.Error("shutdown incomplete", "err", err.Error())
		code = 1
	}
	return code
}

// RunCommand runs the command of spec called name and returns its exit
// code; an unknown name is reported to errOut with the names there are, and
// returns 2.
func RunCommand(ctx context.Context, spec Spec, name string, env func(string) string, out, errOut io.Writer) int {
	var names []string
	for _, c := range spec.Commands {
		if c.Name == name {
			return c.Run(ctx, env, out, errOut)
		}
		names = append(names, c.Name)
	}
	want := "none"
	switch n := len(names); {
	case n == 1:
		want = names[0] + ", or none"
	case n > 1:
		want = strings.Join(names[:n-1], ", ") + " or " + names[n-1] + ", or none"
	}
	fmt.Fprintf(errOut, "%s: unknown command %q; want %s to run the service\n", spec.Name, name, want)
	return 2
}

// buildCommit is the commit the binary was built from (Go's VCS stamp,
// "-dirty" when the tree had changes), or "unknown" (a build outside a
// git checkout, such as an image built without .git).
func buildCommit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
