package ffmpeg

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Limits.
const (
	// DefaultCPUTime is the processor time one ffmpeg or ffprobe may use
	// (all its threads together). Extracting and encoding the audio of a
	// 4-hour video takes a few minutes of it; 30 minutes leaves room for
	// a slow machine and stops a runaway.
	DefaultCPUTime = 30 * time.Minute
	// DefaultMemory is the address space one ffmpeg or ffprobe may map:
	// Debian's ffmpeg maps about 270 MiB (most of it its shared libraries)
	// converting a 720p video.
	DefaultMemory = 1 << 30
	// cpuGrace is how long past the CPU limit a process that ignores
	// SIGXCPU runs before the kernel kills it.
	cpuGrace = 2 * time.Second
)

// Limits bound one ffmpeg or ffprobe process. They are resource limits
// (setrlimit) set on the child as soon as it started (prlimit: Go starts
// children without a hook to set them before exec); the CPU time counts
// from the process's start, so the few microseconds before they are in
// place are counted too, and they are in place long before ffmpeg opens
// its input (loading its libraries takes milliseconds).
type Limits struct {
	// CPUTime caps the processor time, user and system, of all the
	// process's threads (RLIMIT_CPU, in whole seconds, rounded up; at the
	// limit the kernel sends SIGXCPU, on which ffmpeg stops, and SIGKILL
	// cpuGrace later). DefaultCPUTime when zero.
	CPUTime time.Duration
	// Memory caps the address space in bytes (RLIMIT_AS): an allocation
	// beyond it fails, and ffmpeg with it. DefaultMemory when zero.
	Memory int64
}

// cpu returns the CPU time limit in force, in whole seconds.
func (l Limits) cpu() time.Duration {
	d := l.CPUTime
	if d <= 0 {
		d = DefaultCPUTime
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// memory returns the memory limit in force.
func (l Limits) memory() int64 {
	if l.Memory <= 0 {
		return DefaultMemory
	}
	return l.Memory
}

// apply sets the limits on the running process pid. A limit is never
// raised past the hard limit the process inherited (raising it needs
// privileges).
func (l Limits) apply(pid int) error {
	cpu := uint64(l.cpu() / time.Second)
	for _, lim := range []struct {
		resource  int
		name      string
		soft, max uint64
	}{
		{unix.RLIMIT_CPU, "CPU time", cpu, cpu + uint64(cpuGrace/time.Second)},
		{unix.RLIMIT_AS, "address space", uint64(l.memory()), uint64(l.memory())},
	} {
		var old unix.Rlimit
		if err := unix.Prlimit(pid, lim.resource, nil, &old); err != nil {
			return fmt.Errorf("read the %s limit of process %d: %w", lim.name, pid, err)
		}
		next := unix.Rlimit{Cur: min(lim.soft, old.Max), Max: min(lim.max, old.Max)}
		if err := unix.Prlimit(pid, lim.resource, &next, nil); err != nil {
			return fmt.Errorf("limit the %s of process %d: %w", lim.name, pid, err)
		}
	}
	return nil
}

// start starts cmd with the limits: made to die with the converter, and
// killed (and reaped) when the limits cannot be set.
func (l Limits) start(cmd *exec.Cmd) error {
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if err := l.apply(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	return nil
}

// overCPU reports whether the process that ended with state used up its
// CPU time limit (the kernel's SIGXCPU stopped it, or its SIGKILL).
func (l Limits) overCPU(state *os.ProcessState) bool {
	if state == nil {
		return false
	}
	// The kernel checks the limit at its ticks: the time used reaches it,
	// give or take a tick.
	return state.UserTime()+state.SystemTime() >= l.cpu()-50*time.Millisecond
}

// setProcAttr makes the child die with the converter (kill -9 of the
// converter must not leave an orphaned ffmpeg writing into a temp dir).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
