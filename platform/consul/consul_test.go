package consul_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func uniqueName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// backend is a fake service instance whose /readyz answers 200 or 503.
type backend struct {
	srv   *httptest.Server
	ready atomic.Bool
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.ready.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) port(t *testing.T) int {
	t.Helper()
	u, _ := url.Parse(b.srv.URL)
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// register registers b as an instance of name and deregisters it at cleanup.
func register(t *testing.T, client *api.Client, name string, b *backend) *consul.Registrar {
	t.Helper()
	reg := consul.NewRegistrar(client, consul.Registration{
		Name: name, ID: uniqueName(t, name), Address: "127.0.0.1", Port: b.port(t),
		Tags: []string{"test", "v1"}, Version: "1.2.3", CheckURL: b.srv.URL + "/readyz",
	}, quiet())
	ctx := testenv.Context(t, 60*time.Second)
	if err := reg.Register(ctx); err != nil {
		t.Fatalf("Register: %v", err)
	}
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	return reg
}

// registerPassing registers an instance of a new service and waits until
// its readiness check passes.
func registerPassing(t *testing.T, client *api.Client) (string, *backend, *consul.Registrar) {
	t.Helper()
	name := uniqueName(t, "svc")
	b := newBackend(t)
	reg := register(t, client, name, b)
	testenv.Eventually(t, 10*time.Second, func() bool { return len(passing(t, client, name)) == 1 },
		"the instance never passed its readiness check")
	return name, b, reg
}

func newClient(t *testing.T) *api.Client {
	t.Helper()
	client, err := consul.NewClient(testenv.ConsulAddr(t), testenv.ConsulToken(t))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func passing(t *testing.T, client *api.Client, name string) []*api.ServiceEntry {
	t.Helper()
	entries, _, err := client.Health().Service(name, "", true, nil)
	if err != nil {
		t.Fatalf("health query: %v", err)
	}
	return entries
}

func TestRegisterDescribesTheInstance(t *testing.T) {
	client := newClient(t)
	name, b, reg := registerPassing(t, client)
	e := passing(t, client, name)[0]
	if e.Service.Port != b.port(t) || e.Service.Address != "127.0.0.1" {
		t.Errorf("registered %s:%d, want 127.0.0.1:%d", e.Service.Address, e.Service.Port, b.port(t))
	}
	if e.Service.Meta["version"] != "1.2.3" {
		t.Errorf("meta.version = %q, want 1.2.3", e.Service.Meta["version"])
	}
	if strings.Join(e.Service.Tags, ",") != "test,v1" {
		t.Errorf("tags = %v", e.Service.Tags)
	}
	// The api structs leave out the check's timings; read the agent's JSON.
	req, _ := http.NewRequest(http.MethodGet, "http://"+testenv.ConsulAddr(t)+"/v1/health/checks/"+name, nil)
	testenv.ConsulHeader(t, req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var checks []struct{ Type, Interval, Timeout, Status string }
	if err := json.NewDecoder(resp.Body).Decode(&checks); err != nil || len(checks) != 1 {
		t.Fatalf("checks = %+v, %v; want one", checks, err)
	}
	interval, err := time.ParseDuration(checks[0].Interval)
	if checks[0].Type != "http" || err != nil || interval > 2*time.Second || checks[0].Status != api.HealthPassing {
		t.Errorf("check = %+v, want a passing http check every ≤ 2s", checks[0])
	}

	ctx := testenv.Context(t, 60*time.Second)
	if err := reg.Deregister(ctx); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if n := len(passing(t, client, name)); n != 0 {
		t.Errorf("%d instances after Deregister", n)
	}
	if err := reg.Deregister(ctx); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
}

func TestCheckGoesCriticalWhenNotReady(t *testing.T) {
	client := newClient(t)
	name, b, _ := registerPassing(t, client)
	b.ready.Store(false)
	start := time.Now()
	testenv.Eventually(t, 5*time.Second, func() bool { return len(passing(t, client, name)) == 0 },
		"still passing 5s after /readyz started answering 503")
	t.Logf("critical %v after /readyz failed", time.Since(start).Round(10*time.Millisecond))
}

func TestRunRegistersAgainWhenTheAgentForgets(t *testing.T) {
	client := newClient(t)
	name := uniqueName(t, "svc")
	b := newBackend(t)
	reg := register(t, client, name, b)
	ctx, cancel := context.WithCancel(testenv.Context(t, 60*time.Second))
	defer cancel()
	go reg.Run(ctx)

	forget(t, client, name)
	testenv.Eventually(t, 15*time.Second, func() bool { return len(passing(t, client, name)) == 1 },
		"Run did not register the instance again")
}

// forget removes the one instance of name from the agent, as an agent that
// restarted has forgotten it.
func forget(t *testing.T, client *api.Client, name string) {
	t.Helper()
	services, err := client.Agent().ServicesWithFilter("Service == \"" + name + "\"")
	if err != nil || len(services) != 1 {
		t.Fatalf("agent services = %v, %v", services, err)
	}
	for id := range services {
		if err := client.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
	}
}

// The agent restarts: it is unreachable for a while and then holds nothing.
// Run retries every second meanwhile and registers the instance, passing,
// within about a second of the agent's return.
func TestRunRegistersAgainSoonAfterTheAgentReturns(t *testing.T) {
	client := newClient(t)
	proxy := newCountingProxy(t)
	viaProxy := proxy.client(t)
	name := uniqueName(t, "svc")
	b := newBackend(t)
	reg := register(t, viaProxy, name, b)
	ctx, cancel := context.WithCancel(testenv.Context(t, 60*time.Second))
	defer cancel()
	go reg.Run(ctx)

	proxy.stop()
	forget(t, client, name)
	// Every 5 s, three attempts would take 15 s; every second, about 7.
	testenv.Eventually(t, 9*time.Second, func() bool { return proxy.refused.Load() >= 3 },
		"Run tried %d times while the agent was away; want a retry every second", proxy.refused.Load())

	proxy.down.Store(false)
	back := time.Now()
	testenv.Eventually(t, 3*time.Second, func() bool { return len(passing(t, client, name)) == 1 },
		"the instance was not registered and passing again within 3s of the agent's return")
	t.Logf("registered and passing %v after the agent returned", time.Since(back).Round(10*time.Millisecond))
}

func TestResolverRoundRobinsOverPassingInstances(t *testing.T) {
	client := newClient(t)
	name := uniqueName(t, "svc")
	b1, b2 := newBackend(t), newBackend(t)
	register(t, client, name, b1)
	register(t, client, name, b2)
	testenv.Eventually(t, 10*time.Second, func() bool { return len(passing(t, client, name)) == 2 },
		"both instances never passed")

	r := consul.NewResolver(client, quiet())
	defer r.Close()
	ctx := testenv.Context(t, 60*time.Second)
	seen := map[int]int{}
	for range 10 {
		inst, err := r.Pick(ctx, name)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		seen[inst.Port]++
	}
	if seen[b1.port(t)] != 5 || seen[b2.port(t)] != 5 {
		t.Fatalf("picks per port = %v, want 5 each", seen)
	}

	// One instance fails its check: the watch drops it without a restart.
	b2.ready.Store(false)
	testenv.Eventually(t, 10*time.Second, func() bool {
		list, err := r.Instances(ctx, name)
		return err == nil && len(list) == 1 && list[0].Port == b1.port(t)
	}, "the resolver kept an instance that is no longer passing")

	// None passes: a clear error naming the service.
	b1.ready.Store(false)
	var err error
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, err = r.Pick(ctx, name)
		return err != nil
	}, "Pick still answers with no passing instance")
	if errs.CodeOf(err) != errs.Unavailable || !strings.Contains(err.Error(), name) {
		t.Fatalf("err = %v (code %s), want unavailable naming %s", err, errs.CodeOf(err), name)
	}
}

func TestResolverUnknownServiceNamesIt(t *testing.T) {
	r := consul.NewResolver(newClient(t), quiet())
	defer r.Close()
	_, err := r.Pick(testenv.Context(t, 60*time.Second), "no-such-service-xyz")
	if errs.CodeOf(err) != errs.Unavailable || !strings.Contains(err.Error(), "no-such-service-xyz") {
		t.Fatalf("err = %v, want unavailable naming the service", err)
	}
}

// BaseURL answers with the fixed URL when there is one, else with a passing
// instance's.
func TestResolverBaseURL(t *testing.T) {
	client := newClient(t)
	name, b, _ := registerPassing(t, client)
	r := consul.NewResolver(client, quiet())
	defer r.Close()
	ctx := testenv.Context(t, 60*time.Second)
	if got, err := r.BaseURL("http://auth.example:8101", name)(ctx); err != nil || got != "http://auth.example:8101" {
		t.Fatalf("fixed: %q, %v", got, err)
	}
	want := fmt.Sprintf("http://127.0.0.1:%d", b.port(t))
	if got, err := r.BaseURL("", name)(ctx); err != nil || got != want {
		t.Fatalf("through Consul: %q, %v; want %s", got, err, want)
	}
	if _, err := r.BaseURL("", "no-such-service-xyz")(ctx); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("unknown service: %v, want unavailable", err)
	}
}

// countingProxy forwards to the real agent and counts the requests.
type countingProxy struct {
	srv     *httptest.Server
	n       atomic.Int64
	refused atomic.Int64
	down    atomic.Bool
}

func newCountingProxy(t *testing.T) *countingProxy {
	t.Helper()
	target, _ := url.Parse("http://" + testenv.ConsulAddr(t))
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			p.refused.Add(1)
			http.Error(w, "consul is down", http.StatusBadGateway)
			return
		}
		p.n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// client returns a Consul client that goes through the proxy.
func (p *countingProxy) client(t *testing.T) *api.Client {
	t.Helper()
	c, err := consul.NewClient(strings.TrimPrefix(p.srv.URL, "http://"), testenv.ConsulToken(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stop makes Consul unreachable through the proxy: the watch's blocking
// query is cut and every later query fails.
func (p *countingProxy) stop() {
	p.down.Store(true)
	p.srv.CloseClientConnections()
}

func TestResolverAnswersFromMemory(t *testing.T) {
	client := newClient(t)
	name, b, _ := registerPassing(t, client)

	proxy := newCountingProxy(t)
	viaProxy := proxy.client(t)
	r := consul.NewResolver(viaProxy, quiet())
	defer r.Close()
	ctx := testenv.Context(t, 60*time.Second)
	for range 1000 {
		if _, err := r.Pick(ctx, name); err != nil {
			t.Fatalf("Pick: %v", err)
		}
	}
	if n := proxy.n.Load(); n > 3 {
		t.Fatalf("1000 picks made %d Consul requests; want the watch's few", n)
	}

	// Consul goes away: the last list still answers.
	proxy.stop()
	testenv.Eventually(t, 5*time.Second, func() bool { return proxy.refused.Load() > 0 },
		"the watch never noticed that Consul went away")
	inst, err := r.Pick(ctx, name)
	if err != nil || inst.Port != b.port(t) {
		t.Fatalf("Pick with Consul gone = %v, %v; want the last known instance", inst, err)
	}
}

// The agent restarts and comes back without the instance: the resolver keeps
// the last list while instances register again, then believes the agent.
func TestResolverWaitsForInstancesToRejoinARestartedAgent(t *testing.T) {
	client := newClient(t)
	name, b, reg := registerPassing(t, client)
	proxy := newCountingProxy(t)
	viaProxy := proxy.client(t)
	r := consul.NewResolver(viaProxy, quiet())
	defer r.Close()
	ctx := testenv.Context(t, 60*time.Second)
	if _, err := r.Pick(ctx, name); err != nil {
		t.Fatalf("Pick: %v", err)
	}

	proxy.stop()
	testenv.Eventually(t, 5*time.Second, func() bool { return proxy.refused.Load() > 0 },
		"the watch never noticed that Consul went away")
	if err := reg.Deregister(ctx); err != nil { // the restarted agent forgot it
		t.Fatal(err)
	}
	// Counted before the agent comes back: the first query it answers may
	// come at once, and the one after it blocks for the whole grace.
	served := proxy.n.Load()
	proxy.down.Store(false)
	testenv.Eventually(t, 15*time.Second, func() bool { return proxy.n.Load() > served },
		"the watch never asked the agent again")
	back := time.Now()
	if inst, err := r.Pick(ctx, name); err != nil || inst.Port != b.port(t) {
		t.Fatalf("Pick right after the agent returned empty = %v, %v; want the last known instance", inst, err)
	}
	// Nobody registers again: after the grace the agent's empty list wins.
	testenv.Eventually(t, 10*time.Second, func() bool { _, err := r.Pick(ctx, name); return err != nil },
		"the resolver kept a gone instance for good")
	if waited := time.Since(back); waited < 3*time.Second {
		t.Fatalf("the empty list won after %v; want the grace of a few seconds", waited)
	}
}

func TestNewClientRejectsEmptyAddress(t *testing.T) {
	if _, err := consul.NewClient("", ""); err == nil {
		t.Fatal("NewClient(\"\") succeeded")
	}
	if _, err := consul.NewClient("http://", ""); err == nil {
		t.Fatal(`NewClient("http://") succeeded`)
	}
	if _, err := consul.NewClient("http://127.0.0.1:8500", ""); err != nil {
		t.Fatalf("NewClient with scheme: %v", err)
	}
}
