package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a service running as a child process of a test.
type Process struct {
	Cmd  *exec.Cmd
	Addr string // the address it listens on, from its "service started" line
	ID   string // its Consul instance id
	// Exited delivers the result of Wait once the process ends.
	Exited <-chan error
	log    *LogBuffer
}

// StartProcess starts cmd, a service built on platform/service, and waits
// until it logs "service started" (the line carries the real address, so
// PORT=0 works). Its output goes to a buffer (Output); the test fails when it
// exits first or takes longer than 30 s. The process is killed at cleanup.
func StartProcess(tb testing.TB, cmd *exec.Cmd) *Process {
	tb.Helper()
	p := &Process{Cmd: cmd, log: &LogBuffer{}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testenv: start %s: %v", cmd.Path, err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill() })

	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stdout, p.log))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "service started" {
				select {
				case started <- rec:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	exited := make(chan error, 1)
	p.Exited = exited
	go func() { exited <- cmd.Wait() }()

	select {
	case rec := <-started:
		p.Addr, _ = rec["addr"].(string)
		p.ID, _ = rec["id"].(string)
	case err := <-p.Exited:
		tb.Fatalf("testenv: %s exited at start: %v\n%s", cmd.Path, err, p.log)
	case <-time.After(30 * time.Second):
		tb.Fatalf("testenv: %s did not start within 30s\n%s", cmd.Path, p.log)
	}
	return p
}

// Output returns what the process has written so far.
func (p *Process) Output() string { return p.log.String() }

// Terminate sends SIGTERM.
func (p *Process) Terminate() error { return p.Cmd.Process.Signal(syscall.SIGTERM) }

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.Exited
}

// BuildService builds service's program (github.com/audiomill/audiomill/
// <service>/cmd/<service>) into dir and returns its path.
func BuildService(dir, service string) (string, error) {
	bin := filepath.Join(dir, service)
	out, err := exec.Command("go", "build", "-o", bin, "github.com/audiomill/audiomill/"+service+"/cmd/"+service).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", service, err, out)
	}
	return bin, nil
}

// WaitReady waits up to timeout until the process's /readyz answers 200,
// failing tb with its output otherwise.
func (p *Process) WaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	Eventually(tb, timeout, func() bool {
		resp, err := http.Get("http://" + p.Addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "%s at %s not ready:\n%s", p.Cmd.Path, p.Addr, p.Output())
}

// Memory is a process's resident set size now and at its peak, in bytes.
type Memory struct{ RSS, Peak int64 }

// ProcessMemory reads VmRSS and VmHWM of process pid from /proc.
func ProcessMemory(pid int) (Memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read process status: %w", err)
	}
	var m Memory
	for line := range strings.SplitSeq(string(data), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.Peak = kb << 10
		}
	}
	if m.RSS == 0 {
		return Memory{}, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// MainInTempDir is a TestMain body for tests that build service binaries
// (or other shared fixtures) once: it makes a temporary directory named
// after prefix, hands it to setup, runs the tests, removes the directory
// and returns the exit code for os.Exit. A setup error fails the run.
func MainInTempDir(m *testing.M, prefix string, setup func(dir string) error) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
