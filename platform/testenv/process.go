package testenv

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
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
