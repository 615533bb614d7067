package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process a test started. It runs in its own process
// group, dies with the test binary (Pdeathsig) and is stopped by t.Cleanup.
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
	if err := p.cmd.Start(); err != nil {
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

// ChildPIDs lists the live (non-zombie) direct children of the test process:
// the apiservers, etcds and workload processes it started.
func ChildPIDs() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		// After the ")" closing the command name: " S PPID ...".
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// ProcessAlive reports whether a process with pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	// Field 3 of /proc/PID/stat is the state; Z is a zombie awaiting reaping.
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] != 'Z'
	}
	return true
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
