// Package stack runs parts of the audiomill stack for tests that exercise
// them together: service binaries built from this checkout, started as
// processes that register in the real Consul, and the nginx edge with
// consul-template rendering it, exactly as `make up` runs them.
//
// Every instance a test starts carries a tag unique to the test (Stack.Tag),
// and the edge it starts routes only to instances with that tag, so tests run
// beside a full `make up` stack and beside each other.
package stack

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Stack is one test's set of processes.
type Stack struct {
	tb     testing.TB
	Root   string // the repository's root
	Tag    string // carried by every instance started here
	Consul string // Consul agent host:port
	bins   *Binaries
}

// Binaries builds the services once per test binary.
type Binaries struct {
	dir  string
	root string
	mu   sync.Mutex
	done map[string]string
}

// NewBinaries returns a builder writing into dir.
func NewBinaries(dir string) *Binaries {
	return &Binaries{dir: dir, done: map[string]string{}}
}

// Path builds service (with scripts/build.sh's go build) the first time and
// returns its binary.
func (b *Binaries) Path(tb testing.TB, root, service string) string {
	tb.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.done[service]; ok {
		return p
	}
	// scripts/build.sh is the one build command; BIN_DIR points it here.
	cmd := exec.Command(filepath.Join(root, "scripts", "build.sh"), service)
	cmd.Env = append(os.Environ(), "BIN_DIR="+b.dir, "VERSION=e2e")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("stack: build %s: %v\n%s", service, err, out)
	}
	p := filepath.Join(b.dir, service)
	b.done[service] = p
	return p
}

// New returns a Stack for tb; bins may be shared by the tests of a package.
func New(tb testing.TB, bins *Binaries) *Stack {
	tb.Helper()
	root, err := RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return &Stack{tb: tb, Root: root, Tag: "t" + randomHex(tb, 6), Consul: testenv.ConsulAddr(tb), bins: bins}
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
			return "", fmt.Errorf("stack: no go.work above the working directory")
		}
		dir = parent
	}
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Start runs one instance of service on an ephemeral port, tagged with the
// stack's tag, and waits until Consul reports it passing.
func (s *Stack) Start(service string, env ...string) *testenv.Process {
	s.tb.Helper()
	cmd := exec.Command(s.bins.Path(s.tb, s.Root, service))
	cmd.Dir = s.Root
	cmd.Env = append(os.Environ(), "PORT=0", "SERVICE_TAGS="+s.Tag,
		"SERVICE_ID="+service+"-"+s.Tag+"-"+randomHex(s.tb, 3), "CONSUL_HTTP_ADDR="+s.Consul, "LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	p := testenv.StartProcess(s.tb, cmd)
	s.WaitPassing(service, p.ID)
	return p
}

// WaitPassing waits up to 10 s until instance id of service passes in Consul.
func (s *Stack) WaitPassing(service, id string) {
	s.tb.Helper()
	client, err := consul.NewClient(s.Consul)
	if err != nil {
		s.tb.Fatal(err)
	}
	q := &api.QueryOptions{Filter: fmt.Sprintf("ServiceID == %q", id)}
	testenv.Eventually(s.tb, 10*time.Second, func() bool {
		checks, _, err := client.Health().Checks(service, q)
		return err == nil && len(checks) > 0 && checks.AggregatedStatus() == api.HealthPassing
	}, "%s instance %s never passed in Consul", service, id)
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Port returns the port of a host:port address.
func Port(tb testing.TB, addr string) int {
	tb.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
