package service_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// childEnv makes the test binary run a real service process (see TestMain),
// so signals and kill -9 are tested on a real process.
const childEnv = "AUDIOMILL_SERVICE_TEST_CHILD"

const slowDelay = 2 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(service.Run(service.Spec{
			Name:        os.Getenv("TEST_SERVICE_NAME"),
			Version:     "test-1.2.3",
			DefaultPort: 0,
			Wire: func(_ context.Context, app *service.App) error {
				app.Server.Router().HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
					time.Sleep(slowDelay)
					_, _ = io.WriteString(w, "done")
				})
				return nil
			},
		}))
	}
	os.Exit(m.Run())
}

// startChild runs the service in a child process (see TestMain).
func startChild(t *testing.T, consulAddr string, extraEnv ...string) *testenv.Process {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", fmt.Sprintf("TEST_SERVICE_NAME=svctest-%d", time.Now().UnixNano()),
		"PORT=0", "CONSUL_HTTP_ADDR="+consulAddr, "CONSUL_HTTP_TOKEN="+testenv.ConsulToken(t), "SHUTDOWN_TIMEOUT=10s", "SHUTDOWN_DELAY=500ms")
	cmd.Env = append(cmd.Env, extraEnv...)
	return testenv.StartProcess(t, cmd)
}

func consulClient(t *testing.T) (*api.Client, string) {
	t.Helper()
	addr := testenv.ConsulAddr(t)
	client, err := api.NewClient(&api.Config{Address: addr, Token: testenv.ConsulToken(t)})
	if err != nil {
		t.Fatal(err)
	}
	return client, addr
}

func checkStatus(t *testing.T, client *api.Client, id string) string {
	t.Helper()
	checks, err := client.Agent().Checks()
	if err != nil {
		t.Fatalf("consul checks: %v", err)
	}
	for _, c := range checks {
		if c.ServiceID == id {
			return c.Status
		}
	}
	return "absent"
}

func waitPassing(t *testing.T, client *api.Client, c *testenv.Process) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() bool { return checkStatus(t, client, c.ID) == api.HealthPassing },
		"service %s never passing in Consul", c.ID)
}

func TestRegistersWithMetaAndRealPort(t *testing.T) {
	client, addr := consulClient(t)
	c := startChild(t, addr, "SERVICE_TAGS=a,b")
	waitPassing(t, client, c)
	svc, _, err := client.Agent().Service(c.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.Addr)
	if fmt.Sprint(svc.Port) != port || svc.Port == 0 {
		t.Fatalf("registered port %d, listening on %s", svc.Port, c.Addr)
	}
	if svc.Meta["version"] != "test-1.2.3" || !strings.HasPrefix(svc.Service, "svctest-") || strings.Join(svc.Tags, ",") != "a,b" {
		t.Fatalf("registration = %+v", svc)
	}
	_ = c.Terminate()
	if err := <-c.Exited; err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, c.Output())
	}
}

// SIGTERM: the instance leaves Consul before its listener closes, and a
// request in flight when the signal came still completes.
func TestSIGTERMDeregistersThenDrains(t *testing.T) {
	client, addr := consulClient(t)
	c := startChild(t, addr)
	waitPassing(t, client, c)

	result := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + c.Addr + "/slow")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(200 * time.Millisecond) // the request is in the handler
	if err := c.Terminate(); err != nil {
		t.Fatal(err)
	}

	// The listener closes when Shutdown starts, and Shutdown then waits for
	// /slow. Had the service closed its listener before deregistering, Consul
	// would still list it for the whole drain; so the first refused dial must
	// find the instance already gone.
	deadline := time.Now().Add(slowDelay + 5*time.Second)
	closed := false
	for !closed && time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", c.Addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			time.Sleep(5 * time.Millisecond)
			continue
		}
		closed = true
		if st := checkStatus(t, client, c.ID); st != "absent" {
			t.Fatalf("listener closed while the instance is still in Consul (check %s)", st)
		}
	}
	if !closed {
		t.Fatal("listener still open after SIGTERM")
	}
	if got := <-result; got != "200 done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-c.Exited; err != nil {
		t.Fatalf("exit: %v\n%s", err, c.Output())
	}
}

// During SHUTDOWN_DELAY the instance serves on but stays out of Consul: the
// registrar's keep-alive must not register it again.
func TestStaysDeregisteredDuringShutdownDelay(t *testing.T) {
	client, addr := consulClient(t)
	c := startChild(t, addr, "SHUTDOWN_DELAY=7s")
	waitPassing(t, client, c)
	if err := c.Terminate(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Second, func() bool { return checkStatus(t, client, c.ID) == "absent" },
		"still in Consul after SIGTERM")
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); {
		if st := checkStatus(t, client, c.ID); st != "absent" {
			t.Fatalf("registered again (check %s) during the shutdown delay", st)
		}
		if resp, err := http.Get("http://" + c.Addr + "/healthz"); err != nil {
			t.Fatalf("not serving during the shutdown delay: %v", err)
		} else {
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := <-c.Exited; err != nil {
		t.Fatalf("exit: %v\n%s", err, c.Output())
	}
}

// kill -9 leaves no chance to deregister: Consul's check turns critical within 3 s.
func TestKill9GoesCriticalFast(t *testing.T) {
	client, addr := consulClient(t)
	c := startChild(t, addr)
	waitPassing(t, client, c)
	c.Kill()
	killed := time.Now()
	testenv.Eventually(t, 3*time.Second, func() bool { return checkStatus(t, client, c.ID) == api.HealthCritical },
		"check of killed instance %s not critical", c.ID)
	t.Logf("critical %s after kill -9", time.Since(killed).Round(time.Millisecond))
	_ = client.Agent().ServiceDeregister(c.ID)
}

func TestStartFailures(t *testing.T) {
	_, addr := consulClient(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, takenPort, _ := net.SplitHostPort(taken.Addr().String())

	tests := []struct {
		name     string
		env      []string
		wantCode int
		wantMsg  string
	}{
		{"ErrInvalidPort", []string{"PORT=eighty"}, 2, "PORT"},
		{"ErrInvalidTimeout", []string{"SHUTDOWN_TIMEOUT=soon"}, 2, "SHUTDOWN_TIMEOUT"},
		{"ErrInvalidLogLevel", []string{"LOG_LEVEL=loud"}, 2, "LOG_LEVEL"},
		{"ErrNegativeBodyRate", []string{"BODY_MIN_RATE=-1"}, 2, "BODY_MIN_RATE"},
		{"ErrNoBodyRateWindow", []string{"BODY_RATE_WINDOW=0s"}, 2, "BODY_RATE_WINDOW"},
		{"ErrInvalidTrustedProxies", []string{"TRUSTED_PROXIES=10.0.0.0/8,not-a-cidr"}, 2, "TRUSTED_PROXIES"},
		{"ErrTrustedProxyWithoutPrefix", []string{"TRUSTED_PROXIES=10.1.2.3"}, 2, "TRUSTED_PROXIES"},
		{"ErrPortTaken", []string{"PORT=" + takenPort}, 1, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=1", "TEST_SERVICE_NAME=svctest-bad", "CONSUL_HTTP_ADDR="+addr)
			cmd.Env = append(cmd.Env, tt.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			exitErr, ok := err.(*exec.ExitError)
			if !ok || exitErr.ExitCode() != tt.wantCode {
				t.Fatalf("exit = %v, want code %d\n%s", err, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantMsg) {
				t.Fatalf("stderr %q does not name %q", stderr.String(), tt.wantMsg)
			}
		})
	}
}
