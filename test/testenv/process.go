package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process a test started. It runs in its own process
// group, dies with the test binary (Pdeathsig, from a thread that lives as
// long as the process: startOnForkThread) and is stopped by t.Cleanup.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer

	mu      sync.Mutex
	waitErr error
}

// startProcess runs bin with args, keeping its combined output so a failing
// test can show it.
func startProcess(t TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(bin), done: make(chan struct{}), log: &lockedBuffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startOnForkThread(p.cmd); err != nil {
		t.Fatalf("testenv: start %s: %v", p.Name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		if t.Failed() {
			t.Logf("testenv: output of %s (last 4 KiB):\n%s", p.Name, p.log.tail(4096))
		}
	})
	return p
}

// forkThread runs the functions sent to it on one OS thread that never
// exits. The kernel sends a child its Pdeathsig when the thread that forked
// it exits, not when the process does (go.dev/issue/27505), and the Go
// runtime ends a thread when a goroutine locked to it returns: a child
// forked from such a thread would be killed in the middle of its test.
var forkThread = sync.OnceValue(func() chan<- func() {
	jobs := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the process
		for job := range jobs {
			job()
		}
	}()
	return jobs
})

// startOnForkThread starts cmd from the fork thread.
func startOnForkThread(cmd *exec.Cmd) error {
	started := make(chan error, 1)
	forkThread() <- func() { started <- cmd.Start() }
	return <-started
}

// StartProcess runs bin with args in its own process group, as the
// workload processes run: for a test that kills it (Kill) and starts it
// again.
func StartProcess(t TB, bin string, args ...string) *Process {
	t.Helper()
	return startProcess(t, bin, args...)
}

// Kill kills the process group with SIGKILL, as the kernel's OOM killer or
// a node's power loss would, and waits until it is gone.
func (p *Process) Kill() error {
	if exited, _ := p.exited(); exited {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.cmd.Process.Pid)
	}
}

// BuildCommand builds the main package pkg (relative to the repository,
// "./cmd/agent") into a temporary directory and returns the binary.
func BuildCommand(t TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: build %s: %v: %s", pkg, err, out)
	}
	return bin
}

// exited reports whether the process has ended, and its error.
func (p *Process) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after 10 s.
func (p *Process) Stop() error {
	if exited, _ := p.exited(); exited {
		return nil
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.cmd.Process.Pid)
	}
}

// ProcessInfo is a process as /proc/PID/stat and /proc/PID/cmdline show it.
type ProcessInfo struct {
	PID, PPID int
	// PGID and SID are its process group and session: a terminal's Ctrl-C
	// reaches the foreground group, and a process keeps its session when its
	// parent dies.
	PGID, SID int
	// State is R, S, D, T, Z (a zombie: ended, not yet reaped), ...
	State byte
	// StartTime is in clock ticks since boot: with PID, it names the
	// process even after its PID was reused.
	StartTime uint64
	Cmdline   []string
}

// Zombie reports whether the process has ended and only awaits its
// parent's wait.
func (p ProcessInfo) Zombie() bool { return p.State == 'Z' }

// Processes lists the processes of /proc, zombies included; one that
// ends while it is read is left out.
func Processes() ([]ProcessInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var procs []ProcessInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readProcess(pid); err == nil {
			procs = append(procs, p)
		}
	}
	return procs, nil
}

// readProcess reads /proc/PID/stat and cmdline.
func readProcess(pid int) (ProcessInfo, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcessInfo{}, err
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields start after the last ")", with field 3, the state.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ProcessInfo{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || len(fields[0]) != 1 {
		return ProcessInfo{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	p := ProcessInfo{PID: pid, State: fields[0][0]}
	p.PPID, _ = strconv.Atoi(fields[1])
	p.PGID, _ = strconv.Atoi(fields[2])
	p.SID, _ = strconv.Atoi(fields[3])
	p.StartTime, _ = strconv.ParseUint(fields[19], 10, 64)
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cmdline) > 0 {
		p.Cmdline = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	}
	return p, nil
}

// ChildPIDs lists the live (non-zombie) direct children of the test process:
// the apiservers, etcds and workload processes it started.
func ChildPIDs() ([]int, error) {
	procs, err := Processes()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, p := range procs {
		if p.PPID == self && !p.Zombie() {
			pids = append(pids, p.PID)
		}
	}
	return pids, nil
}

// ProcessAlive reports whether a process with pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	p, err := readProcess(pid)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	return err != nil || !p.Zombie()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep the newest output only: control-plane logs of a long test would
	// otherwise grow without bound.
	const keep = 1 << 20
	if b.buf.Len() > 2*keep {
		b.buf.Next(b.buf.Len() - keep)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
