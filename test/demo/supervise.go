package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// The demo runs as two processes of one binary. The one make starts, the
// supervisor, starts the demo proper (the worker) and answers Ctrl-C: it
// tells the worker to stop, and when the worker has ended, however it
// ended (stopped, failed, crashed, killed), it stops every process the
// worker left behind and removes the demo's temporary directory. The
// worker cannot do that alone: the API servers and etcds it starts run in
// process groups of their own, which the terminal's Ctrl-C never reaches,
// and envtest starts them without a parent-death signal, so anything that
// ends the worker before its cleanups have run (a second signal, a closed
// terminal, a panic in any goroutine) used to leave them running.
const (
	// workerEnv marks the worker; its value is the file descriptor of the
	// control pipe, whose end of file tells it to stop.
	workerEnv = "FLOTILLA_DEMO_WORKER"
	// logEnv is the worker's log file: under the supervisor's TMPDIR, not
	// the worker's, so the log outlives the demo.
	logEnv = "FLOTILLA_DEMO_LOG"
	// stopTimeout bounds the worker's own stop. It takes seconds: each
	// process gets SIGTERM and envtest gives an API server or etcd up to
	// 30 s before SIGKILL; a machine busy enough to take longer gets what
	// is left killed.
	stopTimeout = 45 * time.Second
	// leftoverGrace is what a process the worker left behind gets between
	// SIGTERM and SIGKILL; killGrace, how long a SIGKILL may take to show.
	leftoverGrace = 10 * time.Second
	killGrace     = 5 * time.Second
)

// demoDirs are the demo's directory under the repository root and its
// temporary directory, the TMPDIR of the worker and everything it starts.
func demoDirs(root string) (work, tmp string) {
	work = filepath.Join(root, "bin", "demo")
	return work, filepath.Join(work, "tmp")
}

// supervise runs the demo in a worker process, stops it on the first
// SIGINT, SIGTERM or SIGHUP, kills it on the second or when its stop takes
// longer than stopTimeout, then stops whatever it left behind and removes
// its temporary directory. It returns the exit status: 0 when a stop that
// was asked for left nothing behind, 1 when the demo failed or something
// could not be stopped.
func supervise() int {
	// A second signal, or one during the start, must reach the loop below
	// whatever the supervisor is doing; a closed stdout (SIGPIPE) must not
	// end it before the cleanup.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	work, tmp := demoDirs(root)
	// The previous run's files: removed now, so the checkout and the hub's
	// data of a run stay to look at until the next one.
	if err := os.RemoveAll(work); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	// The worker's children that outlive it are reparented to the
	// supervisor rather than to init, where it finds and stops them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "demo: become the subreaper of the demo's processes:", err)
		return 1
	}

	worker, stopWorker, err := startWorker(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		removeTemp(tmp)
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()

	var (
		asked    bool // a signal asked the demo to stop
		killed   bool // the worker was killed: what it left gets SIGKILL too
		deadline <-chan time.Time
		werr     error
	)
wait:
	for {
		select {
		case werr = <-exited:
			break wait
		case <-sigs:
			if !asked {
				asked = true
				step("Stopping (Ctrl-C again stops at once)")
				_ = stopWorker.Close()
				deadline = time.After(stopTimeout)
				continue
			}
			step("Killing what still runs")
			killed = true
			_ = worker.Process.Kill()
		case <-deadline:
			step(fmt.Sprintf("Still stopping after %s: killing what still runs", stopTimeout))
			killed = true
			_ = worker.Process.Kill()
		}
	}
	_ = stopWorker.Close()

	left := stopLeftovers(sigs, killed)
	removeTemp(tmp)
	if len(left) > 0 {
		fmt.Fprintln(os.Stderr, "demo: still running after SIGKILL:")
		for _, p := range left {
			fmt.Fprintf(os.Stderr, "  %d %s\n", p.PID, strings.Join(p.Cmdline, " "))
		}
		return 1
	}
	if werr != nil && !asked {
		return 1 // the worker said why
	}
	if asked {
		step("Stopped: every process of the demo has ended, its temporary files are removed")
	}
	return 0
}

// startWorker starts this binary again as the worker, in the supervisor's
// process group (the terminal's foreground job: Ctrl-C reaches both, and
// the worker stops on it too), with tmp as its TMPDIR. Closing stop tells
// it to stop; so does the supervisor's end, whichever way it ends.
func startWorker(tmp string) (worker *exec.Cmd, stop *os.File, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	control, stop, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer control.Close() // the worker's copy stays open in the worker
	worker = exec.Command(exe, os.Args[1:]...)
	worker.Stdin, worker.Stdout, worker.Stderr = os.Stdin, os.Stdout, os.Stderr
	worker.ExtraFiles = []*os.File{control} // descriptor 3
	worker.Env = append(os.Environ(),
		workerEnv+"=3",
		logEnv+"="+filepath.Join(os.TempDir(), "flotilla-demo.log"),
		// envtest's etcd data and certificates, and anything else a
		// process of the demo writes to its temporary directory, go where
		// the supervisor removes them.
		"TMPDIR="+tmp,
	)
	if err := worker.Start(); err != nil {
		stop.Close()
		return nil, nil, fmt.Errorf("start the demo: %w", err)
	}
	return worker, stop, nil
}

// stopLeftovers stops the supervisor's remaining descendants, the
// processes the worker left behind: SIGTERM, SIGKILL after leftoverGrace
// or at once when kill is set or a signal arrives, reaping them as they
// end. It returns those still running killGrace after SIGKILL.
func stopLeftovers(sigs <-chan os.Signal, kill bool) []testenv.ProcessInfo {
	type id struct {
		pid   int
		start uint64
	}
	sig, since := syscall.SIGTERM, time.Now()
	if kill {
		sig = syscall.SIGKILL
	}
	sent := map[id]syscall.Signal{}
	for {
		reapChildren()
		left, err := descendants(os.Getpid())
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return nil
		}
		if len(left) == 0 {
			return nil
		}
		switch {
		case sig == syscall.SIGTERM && time.Since(since) > leftoverGrace:
			sig, since = syscall.SIGKILL, time.Now()
		case sig == syscall.SIGKILL && time.Since(since) > killGrace:
			return left
		}
		for _, p := range left {
			if k := (id{p.PID, p.StartTime}); sent[k] != sig {
				sent[k] = sig
				_ = syscall.Kill(p.PID, sig)
				_ = syscall.Kill(p.PID, syscall.SIGCONT) // a stopped process acts on SIGTERM once continued
			}
		}
		select {
		case <-sigs:
			if sig != syscall.SIGKILL {
				sig, since = syscall.SIGKILL, time.Now()
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// descendants lists the live processes below pid.
func descendants(pid int) ([]testenv.ProcessInfo, error) {
	procs, err := testenv.Processes()
	if err != nil {
		return nil, err
	}
	children := map[int][]testenv.ProcessInfo{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p)
	}
	var found []testenv.ProcessInfo
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		if !p.Zombie() {
			found = append(found, p)
		}
		queue = append(queue, children[p.PID]...)
	}
	return found, nil
}

// reapChildren waits for the supervisor's children that have ended: the
// worker's orphans, reparented to it.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || errors.Is(err, syscall.ECHILD) {
			return
		}
	}
}

// removeTemp removes the demo's temporary directory.
func removeTemp(tmp string) {
	if err := os.RemoveAll(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
	}
}
