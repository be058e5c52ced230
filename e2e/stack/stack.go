// Package stack runs parts of the audiomill stack for tests that exercise
// them together: service binaries built from this checkout by
// scripts/build.sh, started as processes that register in the real Consul,
// and the nginx edge with consul-template started by scripts/edge.sh —
// exactly what `make up` runs.
//
// Every instance a Stack starts carries a tag unique to it (Stack.Tag), and
// the edge it starts routes only to instances with that tag, so tests run
// beside a full `make up` stack and beside each other.
package stack

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Stack is one test's set of processes, with a directory of its own for
// their binaries, logs and the edge's config (what var/ is to `make up`).
type Stack struct {
	tb     testing.TB
	Root   string // the repository's root
	Tag    string // carried by every instance started here
	Consul *api.Client
	dir    string // holds var/ and a link to the checkout's nginx/
	built  map[string]string
	// registered: Register has put the stack's node into Consul.
	registered bool
	// AuthKEK is the key-encryption key every auth of the stack gets
	// (AUTH_KEK, unless Start is given one), so replicas sharing a
	// database open each other's signing keys.
	AuthKEK string
}

// New returns a Stack for tb.
func New(tb testing.TB) *Stack {
	tb.Helper()
	root, err := RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	client, err := consul.NewClient(testenv.ConsulAddr(tb), testenv.ConsulToken(tb))
	if err != nil {
		tb.Fatal(err)
	}
	s := &Stack{tb: tb, Root: root, Tag: "t" + testenv.RandomHex(tb, 6), Consul: client,
		dir: tb.TempDir(), built: map[string]string{}, AuthKEK: testenv.AuthKEK(tb)}
	if err := os.Symlink(filepath.Join(root, "nginx"), filepath.Join(s.dir, "nginx")); err != nil {
		tb.Fatal(err)
	}
	return s
}

// RepoRoot finds the directory holding go.work, from the working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("stack: working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stack: no go.work above the working directory")
		}
		dir = parent
	}
}

// script runs scripts/<name> with the stack's var/ directory.
func (s *Stack) script(env []string, name string, args ...string) {
	s.tb.Helper()
	cmd := exec.Command(filepath.Join(s.Root, "scripts", name), args...)
	// The test's var/ holds no Consul tokens: the edge's consul-template
	// gets the test token (scripts/edge.sh falls back to CONSUL_HTTP_TOKEN).
	cmd.Env = append(os.Environ(), "AUDIOMILL_VAR_DIR="+filepath.Join(s.dir, "var"),
		"CONSUL_HTTP_TOKEN="+testenv.ConsulToken(s.tb))
	cmd.Env = append(cmd.Env, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.tb.Fatalf("stack: scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// binary builds service with scripts/build.sh once per Stack.
func (s *Stack) binary(service string) string {
	s.tb.Helper()
	if p, ok := s.built[service]; ok {
		return p
	}
	s.script([]string{"VERSION=e2e"}, "build.sh", service)
	p := filepath.Join(s.dir, "var", "bin", service)
	s.built[service] = p
	return p
}

// keepsRecords: the services with a PostgreSQL database of their own.
var keepsRecords = map[string]bool{"auth": true, "gateway": true}

// Start runs one instance of service on an ephemeral port, tagged with the
// stack's tag, and waits until Consul reports it passing. A service that
// keeps records gets a fresh database of its own unless env names one
// (DATABASE_URL=…).
func (s *Stack) Start(service string, env ...string) *testenv.Process {
	s.tb.Helper()
	cmd := exec.Command(s.binary(service))
	cmd.Dir = s.Root
	cmd.Env = append(os.Environ(), "PORT=0", "SERVICE_TAGS="+s.Tag,
		"SERVICE_ID="+service+"-"+s.Tag+"-"+testenv.RandomHex(s.tb, 3),
		"CONSUL_HTTP_ADDR="+testenv.ConsulAddr(s.tb), "CONSUL_HTTP_TOKEN="+testenv.ConsulToken(s.tb),
		"LOG_LEVEL=info")
	if keepsRecords[service] && !slices.ContainsFunc(env, func(v string) bool { return strings.HasPrefix(v, "DATABASE_URL=") }) {
		cmd.Env = append(cmd.Env, "DATABASE_URL="+testenv.NewDatabase(s.tb))
	}
	if service == "auth" {
		// Its own Redis keys (rate limits, sessions) per stack; its tests
		// sign up many users from 127.0.0.1, as `make up` lets them.
		cmd.Env = append(cmd.Env, "AUTH_KEK="+s.AuthKEK, "REDIS_KEY_PREFIX=auth:"+s.Tag+":", "SIGNUP_MAX_PER_CLIENT=100000")
	}
	cmd.Env = append(cmd.Env, env...)
	p := testenv.StartProcess(s.tb, cmd)
	s.tb.Cleanup(func() { _ = s.Consul.Agent().ServiceDeregister(p.ID) })
	testenv.Eventually(s.tb, 10*time.Second, func() bool { return s.Status(service, p.ID) == api.HealthPassing },
		"%s instance %s never passed in Consul", service, p.ID)
	return p
}

// Register puts an instance of service at address:port into Consul's
// catalog with the stack's tag and no health check (so Consul reports it
// passing), as anything able to write to Consul could; id is its instance
// id. The instances live on a node of the stack's own ("e2e-" and its tag),
// which is deregistered whole at cleanup: an agent cannot deregister an
// instance whose id holds a line break (its HTTP API answers 400), and a
// hostile id must not outlive the test in a shared Consul.
func (s *Stack) Register(service, id, address string, port int) {
	s.tb.Helper()
	node := "e2e-" + s.Tag
	reg := &api.CatalogRegistration{Node: node, Address: "127.0.0.1", SkipNodeUpdate: true,
		Service: &api.AgentService{ID: id, Service: service, Tags: []string{s.Tag}, Address: address, Port: port}}
	if _, err := s.Consul.Catalog().Register(reg, nil); err != nil {
		s.tb.Fatalf("stack: register %s %q in Consul: %v", service, id, err)
	}
	if s.registered {
		return
	}
	s.registered = true
	s.tb.Cleanup(func() {
		if _, err := s.Consul.Catalog().Deregister(&api.CatalogDeregistration{Node: node}, nil); err != nil {
			s.tb.Errorf("stack: deregister node %s from Consul: %v", node, err)
		}
	})
}

// Status returns the health of instance id of service in Consul: passing,
// warning, critical, or "" when Consul does not list it.
func (s *Stack) Status(service, id string) string {
	q := &api.QueryOptions{Filter: fmt.Sprintf("ServiceID == %q", id)}
	checks, _, err := s.Consul.Health().Checks(service, q)
	if err != nil || len(checks) == 0 {
		return ""
	}
	return checks.AggregatedStatus()
}

// StackURL is the base URL of the `make up` stack's own instance of
// service: the passing one without tags (with the tag AUDIOMILL_STACK_TAG,
// when set: the Nomad cluster's, "nomad"). A test that needs the stack's own
// (its accounts, its data) asks it there, not through the edge, which also
// routes to the instances other tests run beside it under their tags.
func StackURL(tb testing.TB, service string) string {
	tb.Helper()
	client, err := consul.NewClient(testenv.ConsulAddr(tb), testenv.ConsulToken(tb))
	if err != nil {
		tb.Fatal(err)
	}
	entries, _, err := client.Health().Service(service, "", true, nil)
	if err != nil {
		tb.Fatalf("stack: the passing instances of %s in Consul: %v", service, err)
	}
	// The cluster's instances (make cluster-test) carry its tag.
	tag := os.Getenv("AUDIOMILL_STACK_TAG")
	for _, e := range entries {
		if tag == "" && len(e.Service.Tags) == 0 || tag != "" && slices.Contains(e.Service.Tags, tag) {
			addr := cmp.Or(e.Service.Address, e.Node.Address)
			return "http://" + net.JoinHostPort(addr, strconv.Itoa(e.Service.Port))
		}
	}
	tb.Fatalf("stack: no passing instance of %s without tags in Consul; start the stack with `make up`", service)
	return ""
}
