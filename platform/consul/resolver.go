package consul

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/errs"
)

// Watch timings: how long one blocking query may wait at the agent, and the
// bounds of the back-off after a failed query.
const (
	watchWait      = 5 * time.Minute
	retryMinDelay  = 250 * time.Millisecond
	retryMaxDelay  = 10 * time.Second
	firstListLimit = 5 * time.Second
	// rejoinGrace is how long an empty list from an agent that was
	// unreachable is not believed over the last known one: an agent that
	// restarted holds nothing until the instances register again (each
	// Registrar retries every second while the agent is away).
	rejoinGrace = 5 * time.Second
)

// Instance is one passing instance of a service.
type Instance struct {
	ID      string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
}

// HostPort returns "address:port".
func (i Instance) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// BaseURL returns "http://address:port".
func (i Instance) BaseURL() string { return "http://" + i.HostPort() }

// Resolver answers "where is a passing instance of service X" from memory.
// The first Pick of a name starts a background watch (a blocking query on
// the agent's health endpoint, passing instances only) and waits for its
// first answer; later Picks read the last list without calling Consul. When
// Consul is unreachable the last list is kept, and the watch retries with
// back-off; when it answers again, an empty list is believed only after
// rejoinGrace, so the instances have time to register again in an agent that
// restarted.
type Resolver struct {
	client *api.Client
	logger *slog.Logger
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	watches map[string]*watch
}

type watch struct {
	ready     chan struct{} // closed after the first answer (or failure)
	readyOnce sync.Once
	instances atomic.Pointer[[]Instance]
	lastErr   atomic.Pointer[error]
	next      atomic.Uint64
}

// NewResolver returns a Resolver using client. Close stops its watches.
func NewResolver(client *api.Client, logger *slog.Logger) *Resolver {
	ctx, stop := context.WithCancel(context.Background())
	return &Resolver{client: client, logger: logger, ctx: ctx, stop: stop, watches: map[string]*watch{}}
}

// Close stops every watch and waits for them to end.
func (r *Resolver) Close() error {
	r.stop()
	r.wg.Wait()
	return nil
}

// Pick returns the next passing instance of service, round robin. The error
// is errs.Unavailable, naming the service, when none passes (or Consul has
// never answered for it).
func (r *Resolver) Pick(ctx context.Context, service string) (Instance, error) {
	w, list, err := r.current(ctx, service)
	if err != nil {
		return Instance{}, err
	}
	n := w.next.Add(1) - 1
	return list[n%uint64(len(list))], nil
}

// BaseURL returns a function that says where to send a request for
// service: fixed when it is set (a base URL from the environment, such as
// AUTH_URL), else the base URL of the passing instance Pick returns.
func (r *Resolver) BaseURL(fixed, service string) func(context.Context) (string, error) {
	if fixed != "" {
		return func(context.Context) (string, error) { return fixed, nil }
	}
	return r.Picker(service).Pick
}

// Picker returns the picker of service's base URLs: each Pick is this
// Resolver's Pick of service, as "http://address:port". Nothing is asked
// of Consul before the first Pick.
func (r *Resolver) Picker(service string) ServicePicker {
	return ServicePicker{r: r, service: service}
}

// ServicePicker gives the base URL of a passing instance of one service,
// round robin, once per call (Resolver.Picker). It satisfies
// filestorage/client.Picker and fits any client that asks for a base URL
// per request.
type ServicePicker struct {
	r       *Resolver
	service string
}

// Pick returns "http://address:port" of the next passing instance; the
// error is errs.Unavailable, naming the service, when none passes.
func (p ServicePicker) Pick(ctx context.Context) (string, error) {
	inst, err := p.r.Pick(ctx, p.service)
	if err != nil {
		return "", err
	}
	return inst.BaseURL(), nil
}

// Instances returns the current list of passing instances of service.
func (r *Resolver) Instances(ctx context.Context, service string) ([]Instance, error) {
	_, list, err := r.current(ctx, service)
	if err != nil {
		return nil, err
	}
	return append([]Instance(nil), list...), nil
}

// current returns service's watch and its last non-empty list, waiting for
// the watch's first answer; the error names the service when none passes.
func (r *Resolver) current(ctx context.Context, service string) (*watch, []Instance, error) {
	w := r.watchFor(service)
	select {
	case <-w.ready: // a known list wins over a done ctx
	default:
		select {
		case <-w.ready:
		case <-ctx.Done():
			return nil, nil, errs.Wrap(ctx.Err(), errs.Unavailable, "no instance of %s known yet", service)
		}
	}
	list := w.instances.Load()
	if list == nil || len(*list) == 0 {
		if p := w.lastErr.Load(); p != nil && list == nil {
			return nil, nil, errs.Wrap(*p, errs.Unavailable, "no passing instance of %s: consul unreachable", service)
		}
		return nil, nil, errs.E(errs.Unavailable, "no passing instance of %s", service)
	}
	return w, *list, nil
}

func (r *Resolver) watchFor(service string) *watch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.watches[service]; ok {
		return w
	}
	w := &watch{ready: make(chan struct{})}
	r.watches[service] = w
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(service, w)
	}()
	// A watch that cannot reach Consul still answers its waiters after a while.
	time.AfterFunc(firstListLimit, func() { w.readyOnce.Do(func() { close(w.ready) }) })
	return w
}

func (r *Resolver) run(service string, w *watch) {
	var index uint64
	var rejoinUntil time.Time // while ahead, an empty list does not replace the last one
	failed := false
	delay := retryMinDelay
	for r.ctx.Err() == nil {
		wait := watchWait
		if !rejoinUntil.IsZero() {
			wait = max(time.Until(rejoinUntil), 10*time.Millisecond)
		}
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(r.ctx)
		entries, meta, err := r.client.Health().Service(service, "", true, q)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			w.lastErr.Store(&err)
			if w.instances.Load() == nil {
				w.readyOnce.Do(func() { close(w.ready) })
			}
			r.logger.Warn("consul watch failed; keeping the last instances", "service", service,
				"err", err.Error(), "retry_in", delay.String())
			select {
			case <-time.After(delay):
			case <-r.ctx.Done():
				return
			}
			delay = min(delay*2, retryMaxDelay)
			// The agent may come back as a new one whose index is lower:
			// the first query after a failure does not block.
			index, failed = 0, true
			continue
		}
		delay = retryMinDelay
		if failed {
			failed, rejoinUntil = false, time.Now().Add(rejoinGrace)
		}
		list := toInstances(entries)
		if last := w.instances.Load(); len(list) == 0 && last != nil && len(*last) > 0 && time.Now().Before(rejoinUntil) {
			r.logger.Info("consul is back without instances; keeping the last ones while they register again",
				"service", service, "instances", len(*last))
		} else {
			w.instances.Store(&list)
			rejoinUntil = time.Time{}
		}
		w.readyOnce.Do(func() { close(w.ready) })
		// An index that goes backwards (agent restarted) restarts the watch
		// with one non-blocking query; an index of 0 would never block.
		if meta.LastIndex < index {
			index = 0
		} else {
			index = max(meta.LastIndex, 1)
		}
	}
}

func toInstances(entries []*api.ServiceEntry) []Instance {
	list := make([]Instance, 0, len(entries))
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		list = append(list, Instance{ID: e.Service.ID, Address: addr, Port: e.Service.Port,
			Tags: e.Service.Tags, Meta: e.Service.Meta})
	}
	return list
}
