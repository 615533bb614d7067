package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestCtrlCStopsEverything runs `make demo` as an interactive shell runs a
// command, as the foreground job: a process group of its own (here in a
// session of its own). It waits until the demo is running and presses
// Ctrl-C the way a terminal does, SIGINT to the whole group (make, the
// demo, anything else of the job), then checks that no process of the demo
// survives (none in the job's session, none below make, none of those it
// saw running, none naming the demo's temporary directories), that none of
// the ports they listened on is open, and that the temporary directories
// are removed. It needs the binaries of `make demo-bins` already built.
func TestCtrlCStopsEverything(t *testing.T) {
	bins := testenv.BinDir(t, "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed: the test runs `make demo`")
	}
	const (
		ready      = "Ctrl-C stops everything."       // the story is over, the demo follows statuses
		firstSync  = "==> Waiting for the first sync" // every process of the demo runs
		stopWithin = 2 * time.Minute
	)
	for _, tc := range []struct {
		name string
		// after is the line of the demo's output after which it is
		// interrupted.
		after string
		// interrupt presses Ctrl-C (and what else the user does) on the
		// job's process group; demo is the process that started the API
		// servers.
		interrupt func(t *testing.T, pgid, demo int)
	}{{
		name:  "Ctrl-C once the demo is ready",
		after: ready,
		interrupt: func(t *testing.T, pgid, _ int) {
			signalGroup(t, pgid, syscall.SIGINT)
		},
	}, {
		// An impatient user: the terminal's window closed (SIGHUP to the
		// job) half a second after Ctrl-C, in the middle of the stop.
		name:  "Ctrl-C, then the terminal closes while the demo stops",
		after: firstSync,
		interrupt: func(t *testing.T, pgid, _ int) {
			signalGroup(t, pgid, syscall.SIGINT)
			time.Sleep(500 * time.Millisecond) // the user's pause, not a wait for a condition
			signalGroup(t, pgid, syscall.SIGHUP)
		},
	}, {
		// A stop that never ends on its own: the process that started the
		// clusters hangs (stopped, as a deadlock or a machine too busy to
		// schedule it would leave it).
		name:  "Ctrl-C while the demo hangs",
		after: firstSync,
		interrupt: func(t *testing.T, pgid, demo int) {
			if err := syscall.Kill(demo, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			signalGroup(t, pgid, syscall.SIGINT)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			job := startJob(t, bins)
			job.waitFor(t, tc.after, 10*time.Minute)

			seen := job.processes(t)
			// Two clusters, each an API server and its etcd: otherwise
			// there is nothing to test.
			if n := seen.count(); n["kube-apiserver"] != 2 || n["etcd"] != 2 {
				t.Fatalf("the demo runs %s; want 2 kube-apiserver and 2 etcd", seen.names())
			}
			demo := seen.parentOf(t, "kube-apiserver")
			ports := seen.listening(t)
			dirs := seen.tempDirs(job.tmp, job.keep)
			t.Logf("the demo runs %d processes (%s), listens on %d ports, uses %d temporary directories",
				len(seen), seen.names(), len(ports), len(dirs))

			start, printed := time.Now(), len(job.out.String())
			tc.interrupt(t, job.pgid, demo)
			select {
			case <-job.exited:
			case <-time.After(stopWithin):
				t.Fatalf("make demo still runs %s after Ctrl-C; output:\n%s", stopWithin, job.out.tail(4096))
			}
			t.Logf("make demo ended %.1f s after Ctrl-C, printing:\n%s", time.Since(start).Seconds(), job.out.String()[printed:])

			// make ends when the demo has: nothing of it may run then.
			if left := job.survivors(t, seen, dirs); len(left) > 0 {
				t.Errorf("processes of the demo still run after make ended:\n%s", left)
			}
			// A port the demo freed may be taken by another program
			// already (go test runs other packages' tests meanwhile): only
			// the demo's processes, or none that can be found, count.
			for _, l := range ports {
				holder, open := l.open(t)
				switch {
				case !open:
				case holder == nil || job.belongs(*holder, seen, dirs):
					t.Errorf("port %d (%s's) is still open, held by %s", l.port, l.owner, describe(holder))
				default:
					t.Logf("port %d (%s's) is free, and taken again by %s", l.port, l.owner, describe(holder))
				}
			}
			for _, dir := range dirs {
				if _, err := os.Stat(dir); err == nil {
					t.Errorf("temporary directory %s is left behind", dir)
				}
			}
			if strings.Contains(job.out.String(), "make: ***") {
				t.Errorf("make reported the demo failed; output:\n%s", job.out.tail(2048))
			}
		})
	}
}

// job is `make demo` running as a shell's foreground job.
type job struct {
	cmd    *exec.Cmd
	pgid   int      // make's process group and session
	keep   []string // the repository and the test binaries: never temporary
	tmp    string   // the demo's temporary directory
	logDir string   // make's TMPDIR, where the demo writes its log
	out    *transcript
	exited chan struct{}
}

// startJob starts `make demo` in a session and process group of its own,
// with the test binaries in bins, and kills what is left of it when the
// test ends, so a failing test leaves nothing behind either.
func startJob(t *testing.T, bins string) *job {
	root := testenv.RepoRoot(t)
	work, tmp := demoDirs(root)
	j := &job{keep: []string{root, bins}, tmp: tmp, logDir: t.TempDir(), out: &transcript{}, exited: make(chan struct{})}
	j.cmd = exec.Command("make", "--no-print-directory", "demo", "TEST_BINS="+bins)
	j.cmd.Dir = root
	j.cmd.Env = append(os.Environ(), "TMPDIR="+j.logDir, testenv.BinDirEnv+"="+bins)
	j.cmd.Stdout, j.cmd.Stderr = j.out, j.out
	// A survivor outside make's process group holding the output pipe
	// must not keep Wait from returning (the test then finds it).
	j.cmd.WaitDelay = 10 * time.Second
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A shell's foreground job starts with SIGINT's default action. A test
	// binary started from a non-interactive shell's background job inherits
	// SIGINT ignored, and exec keeps an ignored signal ignored: caught here
	// for the start, it reaches make as the default action.
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGINT)
	err := j.cmd.Start()
	signal.Stop(caught)
	if err != nil {
		t.Fatal(err)
	}
	j.pgid = j.cmd.Process.Pid
	go func() { _ = j.cmd.Wait(); close(j.exited) }()
	t.Cleanup(func() {
		select {
		case <-j.exited:
		default:
			_ = syscall.Kill(-j.pgid, syscall.SIGKILL)
			<-j.exited
		}
		// What survived, found as the test finds it: the job's session.
		procs, _ := testenv.Processes()
		for _, p := range procs {
			if p.SID == j.pgid || references(p, tmp) {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
				_ = syscall.Kill(p.PID, syscall.SIGCONT)
			}
		}
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(j.logDir, "flotilla-demo.log")); err == nil {
				t.Logf("the demo's log (last 4 KiB):\n%s", tail(string(log), 4096))
			}
		}
		_ = os.RemoveAll(work)
	})
	return j
}

// waitFor waits until the demo printed line, failing fast when make
// builds the binaries (they must be current) or ends.
func (j *job) waitFor(t *testing.T, line string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		out := j.out.String()
		switch {
		case strings.Contains(out, line):
			return nil
		case strings.Contains(out, "test-bins: building"):
			t.Fatalf("make demo builds the Kubernetes binaries: run `make demo-bins` first\n%s", j.out.tail(2048))
		}
		select {
		case <-j.exited:
			t.Fatalf("make demo ended before %q:\n%s", line, j.out.tail(4096))
		default:
		}
		return fmt.Errorf("no %q in the demo's output yet", line)
	})
}

// processes lists the job's processes: those in its session and those
// below make (the same, unless one left the session).
func (j *job) processes(t *testing.T) processSet {
	t.Helper()
	procs, err := testenv.Processes()
	if err != nil {
		t.Fatal(err)
	}
	below := map[int]bool{j.pgid: true}
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			if below[p.PPID] && !below[p.PID] {
				below[p.PID], changed = true, true
			}
		}
	}
	var set processSet
	for _, p := range procs {
		if (p.SID == j.pgid || below[p.PID]) && !p.Zombie() {
			set = append(set, p)
		}
	}
	return set
}

// survivors describes the live processes that belong to the demo.
func (j *job) survivors(t *testing.T, seen processSet, dirs []string) string {
	t.Helper()
	procs, err := testenv.Processes()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range procs {
		if !p.Zombie() && j.belongs(p, seen, dirs) {
			fmt.Fprintf(&b, "  %d (parent %d, group %d, session %d): %s\n", p.PID, p.PPID, p.PGID, p.SID, shorten(strings.Join(p.Cmdline, " ")))
		}
	}
	return b.String()
}

// belongs reports whether p is the demo's: in the job's session, seen
// running before the stop (the same PID and start time), or naming the
// demo's temporary directories.
func (j *job) belongs(p testenv.ProcessInfo, seen processSet, dirs []string) bool {
	was := slices.ContainsFunc(seen, func(s testenv.ProcessInfo) bool { return s.PID == p.PID && s.StartTime == p.StartTime })
	named := slices.ContainsFunc(dirs, func(d string) bool { return references(p, d) })
	return p.PID != os.Getpid() && (p.SID == j.pgid || was || named)
}

// references reports whether p's command line names path or a file in it.
func references(p testenv.ProcessInfo, path string) bool {
	return slices.ContainsFunc(p.Cmdline, func(arg string) bool { return strings.Contains(arg, path) })
}

// signalGroup sends sig to process group pgid, as a terminal does.
func signalGroup(t *testing.T, pgid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-pgid, sig); err != nil {
		t.Fatalf("signal %v to process group %d: %v", sig, pgid, err)
	}
}

type processSet []testenv.ProcessInfo

// parentOf returns the parent of the processes running bin (by its base
// name): the demo's process that started them.
func (s processSet) parentOf(t *testing.T, bin string) int {
	t.Helper()
	parents := map[int]bool{}
	for _, p := range s {
		if len(p.Cmdline) > 0 && filepath.Base(p.Cmdline[0]) == bin {
			parents[p.PPID] = true
		}
	}
	if len(parents) != 1 {
		t.Fatalf("processes running %s have parents %v, want one: the demo's; the demo runs:\n%s", bin, parents, s)
	}
	for pid := range parents {
		return pid
	}
	return 0
}

// names counts the processes by program: "2 etcd, 2 kube-apiserver, ...".
func (s processSet) names() string {
	count := s.count()
	var names []string
	for name, n := range count {
		names = append(names, fmt.Sprintf("%d %s", n, name))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// count counts the processes by program.
func (s processSet) count() map[string]int {
	count := map[string]int{}
	for _, p := range s {
		if len(p.Cmdline) > 0 {
			count[filepath.Base(p.Cmdline[0])]++
		}
	}
	return count
}

func (s processSet) String() string {
	var b strings.Builder
	for _, p := range s {
		fmt.Fprintf(&b, "  %d: %s\n", p.PID, shorten(strings.Join(p.Cmdline, " ")))
	}
	return b.String()
}

// tempDirs lists the temporary directories the processes name on their
// command lines (envtest's etcd data directories, certificates,
// kubeconfigs, Prometheus' data), with demoTmp, the demo's own. Paths in
// keep (the repository, the test binaries) are not temporary, even when
// they are under the system's temporary directory (a CI's clone).
func (s processSet) tempDirs(demoTmp string, keep []string) []string {
	dirs := []string{demoTmp}
	under := func(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }
	for _, p := range s {
		for _, arg := range p.Cmdline {
			_, value, ok := strings.Cut(arg, "=")
			if !ok {
				value = arg
			}
			kept := slices.ContainsFunc(keep, func(dir string) bool { return under(value, dir) })
			if !filepath.IsAbs(value) || !(under(value, demoTmp) || under(value, os.TempDir()) && !kept) {
				continue
			}
			if fi, err := os.Stat(value); err == nil && !fi.IsDir() {
				value = filepath.Dir(value)
			}
			if !slices.Contains(dirs, value) {
				dirs = append(dirs, value)
			}
		}
	}
	return dirs
}

// listener is a TCP port a process of the demo listened on.
type listener struct {
	port  int
	owner string
}

// listening lists the TCP ports the processes listen on.
func (s processSet) listening(t *testing.T) []listener {
	t.Helper()
	inodes := listeningSockets(t)
	var ls []listener
	for _, p := range s {
		for _, inode := range socketInodes(p.PID) {
			if port, ok := inodes[inode]; ok && len(p.Cmdline) > 0 {
				ls = append(ls, listener{port: port, owner: filepath.Base(p.Cmdline[0])})
			}
		}
	}
	if len(ls) == 0 {
		t.Fatalf("the demo's processes listen on no port:\n%s", s)
	}
	return ls
}

// open reports whether something listens on l's port, and which process
// (nil when none holds the socket that can be found).
func (l listener) open(t *testing.T) (holder *testenv.ProcessInfo, open bool) {
	t.Helper()
	for inode, port := range listeningSockets(t) {
		if port != l.port {
			continue
		}
		procs, _ := testenv.Processes()
		for _, p := range procs {
			if slices.Contains(socketInodes(p.PID), inode) {
				return &p, true
			}
		}
		return nil, true
	}
	return nil, false
}

func describe(p *testenv.ProcessInfo) string {
	if p == nil {
		return "no process to be found"
	}
	return fmt.Sprintf("%d: %s", p.PID, shorten(strings.Join(p.Cmdline, " ")))
}

// listeningSockets maps the inode of every listening TCP socket to its
// port, from /proc/net/tcp and tcp6.
func listeningSockets(t *testing.T) map[string]int {
	t.Helper()
	sockets := map[string]int{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
			f := strings.Fields(sc.Text())
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if port, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				sockets[f[9]] = int(port)
			}
		}
	}
	return sockets
}

// socketInodes lists the inodes of the sockets pid has open.
func socketInodes(pid int) []string {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil
	}
	var inodes []string
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes = append(inodes, strings.TrimSuffix(inode, "]"))
		}
	}
	return inodes
}

func shorten(s string) string { return tail(s, 200) }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// transcript is the job's output, as its terminal would show it.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (tr *transcript) Write(p []byte) (int, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.Write(p)
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

func (tr *transcript) tail(n int) string { return tail(tr.String(), n) }
