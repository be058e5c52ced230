package filestoragetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/testenv"
)

// Process is filestorage running as its own program, so that its memory
// can be measured apart from the test's.
type Process struct {
	*Service
	Cmd *exec.Cmd
}

// StartProcess builds cmd/filestorage and runs it with backend and env (as
// Start does), stopping it with SIGTERM when tb ends.
func StartProcess(tb testing.TB, backend string, env map[string]string) *Process {
	tb.Helper()
	s, vars := prepare(tb, backend, env)
	bin, err := testenv.BuildService(tb.TempDir(), "filestorage")
	if err != nil {
		tb.Fatal(err)
	}
	vars["LOG_LEVEL"] = "info"
	cmd := exec.Command(bin)
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start filestorage: %v", err)
	}
	p := &Process{Service: s, Cmd: cmd}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		testenv.DropMongoDatabases(vars["MONGO_URI"], s.Database)
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			var line struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
				Addr  string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if !sent && line.Msg == "service started" {
				addr <- line.Addr
				sent = true
			}
			if line.Level == "WARN" || line.Level == "ERROR" {
				fmt.Fprintf(os.Stderr, "filestorage: %s\n", sc.Bytes())
			}
		}
	}()
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-time.After(60 * time.Second):
		tb.Fatal("filestorage did not report its address within 60s")
	}
	return p
}

// RSS returns the process's resident set size and its peak (VmHWM), in bytes.
func (p *Process) RSS() (cur, peak int64, err error) {
	m, err := testenv.ProcessMemory(p.Cmd.Process.Pid)
	return m.RSS, m.Peak, err
}

// ResetPeakRSS starts a new peak measurement (Linux's clear_refs 5).
func (p *Process) ResetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Cmd.Process.Pid), []byte("5"), 0)
}
