// Package consul registers a service in the local Consul agent and finds the
// passing instances of other services.
//
// A Registrar owns one service instance's registration: Register at start,
// Run to re-register when the agent forgets it (a restarted dev agent keeps
// nothing), Deregister before the server stops serving. A Resolver turns a
// service name into a passing instance, round robin, from a list it keeps
// current with blocking queries in the background.
package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Check timings. Consul calls /readyz every CheckInterval; an instance whose
// process died goes critical on the next call (connection refused), so within
// CheckInterval+CheckTimeout. A critical instance left behind by a crashed
// process is removed after DeregisterCriticalAfter.
const (
	CheckInterval           = time.Second
	CheckTimeout            = time.Second
	DeregisterCriticalAfter = time.Minute
	// keepAliveInterval is how often Run checks that the agent still holds
	// the registration; retryInterval how often while the agent does not
	// answer, so an instance is back within about a second of the agent.
	keepAliveInterval = 5 * time.Second
	retryInterval     = time.Second
)

// NewClient returns a client of the Consul agent's HTTP API at addr
// (host:port, or a URL with scheme) that sends token (an ACL token's
// secret; empty: the agent's anonymous token) with every request. Only
// token counts: CONSUL_HTTP_TOKEN and the other variables the Consul API
// reads from the environment by itself are ignored, so what a process sends
// is what its configuration says.
func NewClient(addr, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Token, cfg.TokenFile = token, ""
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		cfg.Scheme, addr = scheme, rest
	}
	if addr == "" {
		return nil, errors.New("consul: empty agent address")
	}
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul: client for %s: %w", addr, err)
	}
	return client, nil
}

// Registration describes one service instance.
type Registration struct {
	Name    string
	ID      string // unique per instance
	Address string // the address other services reach it at
	Port    int    // the port it really listens on
	Tags    []string
	Version string // registered as meta.version
	// Meta is more of the instance's meta (its commit, its start time).
	Meta     map[string]string
	CheckURL string // the readiness URL Consul polls
	// CheckNotes says what the readiness check checks (the Consul UI shows it).
	CheckNotes string
}

// Registrar registers one instance in the local agent and keeps it there.
type Registrar struct {
	client *api.Client
	reg    Registration
	logger *slog.Logger
}

// NewRegistrar returns a Registrar for reg; it contacts nobody until Register.
func NewRegistrar(client *api.Client, reg Registration, logger *slog.Logger) *Registrar {
	return &Registrar{client: client, reg: reg, logger: logger}
}

// registration is the instance with its check; status is the check's state
// until Consul first runs it ("" for Consul's default, critical).
func (r *Registrar) registration(status string) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{
		ID:      r.reg.ID,
		Name:    r.reg.Name,
		Address: r.reg.Address,
		Port:    r.reg.Port,
		Tags:    r.reg.Tags,
		Meta:    r.meta(),
		Check: &api.AgentServiceCheck{
			CheckID:                        "ready:" + r.reg.ID,
			Name:                           r.reg.Name + " readiness",
			Notes:                          r.reg.CheckNotes,
			HTTP:                           r.reg.CheckURL,
			Method:                         http.MethodGet,
			Interval:                       CheckInterval.String(),
			Timeout:                        CheckTimeout.String(),
			DeregisterCriticalServiceAfter: DeregisterCriticalAfter.String(),
			Status:                         status,
		},
	}
}

// meta is the instance's meta: Registration.Meta and its version.
func (r *Registrar) meta() map[string]string {
	m := make(map[string]string, len(r.reg.Meta)+1)
	for k, v := range r.reg.Meta {
		m[k] = v
	}
	m["version"] = r.reg.Version
	return m
}

// Register adds (or replaces) the instance and its readiness check. The
// instance takes traffic once Consul's first check passes.
func (r *Registrar) Register(ctx context.Context) error {
	return r.register(ctx, "")
}

func (r *Registrar) register(ctx context.Context, status string) error {
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(r.registration(status), opts); err != nil {
		return fmt.Errorf("consul: register %s (%s): %w", r.reg.Name, r.reg.ID, err)
	}
	r.logger.Info("registered in consul", "id", r.reg.ID, "port", r.reg.Port, "status", cmp.Or(status, "critical until checked"))
	return nil
}

// Deregister removes the instance. Removing an instance the agent does not
// hold is not an error.
func (r *Registrar) Deregister(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.reg.ID, q); err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("consul: deregister %s (%s): %w", r.reg.Name, r.reg.ID, err)
	}
	r.logger.Info("deregistered from consul", "id", r.reg.ID)
	return nil
}

// Run keeps the registration alive until ctx ends: every few seconds (every
// second while the agent does not answer) it asks the agent for the instance
// and registers it again when the agent does not hold it (the agent
// restarted and forgot it, or the first Register failed).
//
// An instance registered again by Run starts passing: it was serving all
// along, and the edge should not wait for Consul's first check to route to it
// again. The check runs within CheckInterval and corrects it if it is not.
func (r *Registrar) Run(ctx context.Context) {
	wait := keepAliveInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = keepAliveInterval
		if err := r.ensure(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("consul keep-alive failed", "err", err.Error())
			wait = retryInterval
		}
	}
}

func (r *Registrar) ensure(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	_, _, err := r.client.Agent().Service(r.reg.ID, q)
	switch {
	case err == nil:
		return nil
	case isNotFound(err):
		return r.register(ctx, api.HealthPassing)
	default:
		return fmt.Errorf("consul: look up %s: %w", r.reg.ID, err)
	}
}

func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}
