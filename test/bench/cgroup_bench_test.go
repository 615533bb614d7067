package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// memoryCgroup is a fresh memory cgroup that one process runs in, so that
// its memory can be read as the kubelet reads a container's (cadvisor's
// working set): what the process charged, private and file-backed, minus
// the page cache the kernel could reclaim at once.
type memoryCgroup struct {
	dir string
	v2  bool
}

// cgroupsMade numbers the cgroups this process makes, so each has a name
// of its own.
var cgroupsMade atomic.Int64

// newMemoryCgroup creates a child of this process's memory cgroup: on
// cgroup v2 when its memory controller is enabled there, else on cgroup
// v1. It skips the benchmark, naming why, when neither is writable.
func newMemoryCgroup(b *testing.B, name string) *memoryCgroup {
	b.Helper()
	name = fmt.Sprintf("flotilla-bench-%s-%d-%d", name, os.Getpid(), cgroupsMade.Add(1))
	g, errV2 := newMemoryCgroupV2(name)
	if errV2 != nil {
		var errV1 error
		if g, errV1 = newMemoryCgroupV1(name); errV1 != nil {
			b.Skipf("no writable memory cgroup to measure the agent as a container: cgroup v2: %v; cgroup v1: %v", errV2, errV1)
		}
	}
	b.Cleanup(g.remove)
	return g
}

func newMemoryCgroupV2(name string) (*memoryCgroup, error) {
	parent, err := ownCgroupDir(func(controllers string) bool { return controllers == "" }, "cgroup2")
	if err != nil {
		return nil, err
	}
	if enabled, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers")); !hasWord(string(enabled), "memory") {
		return nil, fmt.Errorf("memory controller not enabled at %s (cgroup.controllers: %q)", parent, strings.TrimSpace(string(enabled)))
	}
	g := &memoryCgroup{dir: filepath.Join(parent, name), v2: true}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(g.dir, "memory.current")); err != nil {
		// The parent delegates memory only when its subtree_control says
		// so; that write fails when the parent holds processes itself.
		_ = os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0)
		if _, err = os.Stat(filepath.Join(g.dir, "memory.current")); err != nil {
			g.remove()
			return nil, fmt.Errorf("%s has no memory.current (memory not in %s/cgroup.subtree_control)", g.dir, parent)
		}
	}
	return g, nil
}

func newMemoryCgroupV1(name string) (*memoryCgroup, error) {
	parent, err := ownCgroupDir(func(controllers string) bool { return hasWord(strings.ReplaceAll(controllers, ",", " "), "memory") }, "cgroup")
	if err != nil {
		return nil, err
	}
	g := &memoryCgroup{dir: filepath.Join(parent, name)}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, err
	}
	return g, nil
}

// ownCgroupDir is the directory of this process's cgroup in the hierarchy
// whose /proc/self/cgroup controllers field matches, as mounted.
func ownCgroupDir(matches func(controllers string) bool, fstype string) (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var path string
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		fields := strings.SplitN(line, ":", 3)
		if len(fields) == 3 && (fstype == "cgroup2") == (fields[0] == "0") && matches(fields[1]) {
			path, found = fields[2], true
			break
		}
	}
	if !found {
		return "", fmt.Errorf("this process is in no %s memory hierarchy (/proc/self/cgroup)", fstype)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// ID parent major:minor root mount-point options ... - fstype source super-options
		pre, post, ok := strings.Cut(scanner.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 3 || postFields[0] != fstype {
			continue
		}
		if fstype == "cgroup" && !hasWord(strings.ReplaceAll(postFields[2], ",", " "), "memory") {
			continue
		}
		root, mountPoint := fields[3], fields[4]
		rel, ok := strings.CutPrefix(path, root)
		if !ok {
			continue
		}
		return filepath.Join(mountPoint, rel), nil
	}
	return "", fmt.Errorf("no %s mount holds %s (/proc/self/mountinfo)", fstype, path)
}

func hasWord(s, word string) bool {
	for _, w := range strings.Fields(s) {
		if w == word {
			return true
		}
	}
	return false
}

// command runs bin in the cgroup from before its exec on, so that every
// page it faults in (its own binary's included) is charged there. On v2
// the clone itself places it; on v1 a shell writes its own pid into
// cgroup.procs and then execs bin, so there is no window in which bin
// runs outside the cgroup. release frees what the start needed, once it
// started.
func (g *memoryCgroup) command(bin string, args ...string) (cmd *exec.Cmd, release func(), err error) {
	if !g.v2 {
		script := `echo $$ > "$1" && shift && exec "$@"`
		cmd = exec.Command("/bin/sh", append([]string{"-c", script, "sh", filepath.Join(g.dir, "cgroup.procs"), bin}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		return cmd, func() {}, nil
	}
	fd, err := unix.Open(g.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open cgroup %s: %w", g.dir, err)
	}
	cmd = exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd, func() { _ = unix.Close(fd) }, nil
}

// cgroupMemory is a cgroup's memory as cadvisor reports it for a
// container, in MiB.
type cgroupMemory struct {
	// Usage is everything charged to the cgroup: private memory, page
	// cache and the kernel's memory for it (page tables, stacks).
	Usage float64
	// WorkingSet is what the kubelet evicts on and `kubectl top` shows:
	// usage minus the inactive page cache. A page of the binary that was
	// read once and never found referenced by reclaim is inactive, so
	// without memory pressure most of the binary is left out.
	WorkingSet float64
	// Anon is private memory: heap, stacks, anonymous mappings.
	Anon float64
	// File is page cache: the binary as read from disk (with the disk's
	// readahead) and the files it wrote; FileMapped the part of it mapped
	// into the process, the binary's pages it touched.
	File, FileMapped float64
}

// memory reads the cgroup as cadvisor does: on v1 memory.usage_in_bytes
// minus total_inactive_file (memory.stat), total_rss and total_cache; on
// v2 memory.current minus inactive_file, anon and file.
func (g *memoryCgroup) memory() (cgroupMemory, error) {
	usageFile, inactive, anon, file, mapped := "memory.current", "inactive_file", "anon", "file", "file_mapped"
	if !g.v2 {
		usageFile, inactive, anon, file, mapped = "memory.usage_in_bytes", "total_inactive_file", "total_rss", "total_cache", "total_mapped_file"
	}
	data, err := os.ReadFile(filepath.Join(g.dir, usageFile))
	if err != nil {
		return cgroupMemory{}, err
	}
	usage, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return cgroupMemory{}, fmt.Errorf("%s: %w", usageFile, err)
	}
	if data, err = os.ReadFile(filepath.Join(g.dir, "memory.stat")); err != nil {
		return cgroupMemory{}, err
	}
	stat := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		if key, value, ok := strings.Cut(line, " "); ok {
			stat[key], _ = strconv.ParseUint(value, 10, 64)
		}
	}
	const mib = 1 << 20
	workingSet := usage - min(usage, stat[inactive])
	return cgroupMemory{Usage: float64(usage) / mib, WorkingSet: float64(workingSet) / mib, Anon: float64(stat[anon]) / mib,
		File: float64(stat[file]) / mib, FileMapped: float64(stat[mapped]) / mib}, nil
}

// remove deletes the cgroup once its processes are gone.
func (g *memoryCgroup) remove() {
	if err := os.Remove(g.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A process still in it keeps it.
		fmt.Fprintf(os.Stderr, "bench: remove cgroup %s: %v\n", g.dir, err)
	}
}

// buildImageBinary builds pkg as make images builds the binaries of the
// hub and agent images (deployments/images/binary.go): static, -trimpath,
// without symbol tables.
func buildImageBinary(b *testing.B, pkg string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	cmd.Dir = testenv.RepoRoot(b)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v: %s", pkg, err, out)
	}
	return bin
}

// evictPageCache writes a file back and drops it from the page cache, then
// checks that none of it stayed, so the next process to map it reads it
// from disk as a container reads its binary from its image, and charges
// those pages to its own cgroup (a page is charged to the cgroup that
// first brought it in: for a file just written, the writer).
func evictPageCache(b *testing.B, path string) {
	b.Helper()
	dropPageCache(b, path)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(info.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(data)
	pageSize := os.Getpagesize()
	resident := make([]byte, (len(data)+pageSize-1)/pageSize)
	// x/sys/unix has no Mincore wrapper on Linux.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&resident[0]))); errno != 0 {
		b.Fatalf("mincore %s: %v", path, errno)
	}
	cached := 0
	for _, r := range resident {
		cached += int(r & 1)
	}
	if cached > 0 {
		b.Fatalf("%s: %d of %d pages still in the page cache after FADV_DONTNEED (is another process running it?)", path, cached, len(resident))
	}
}

// startAgentContainer runs the agent binary bin as a container would: in a
// fresh memory cgroup of its own, its binary read from disk rather than
// from the page cache its build left. It skips the benchmark when no
// memory cgroup is writable.
func startAgentContainer(b *testing.B, bin string, args ...string) *agentProcess {
	b.Helper()
	g := newMemoryCgroup(b, "agent")
	evictPageCache(b, bin)
	cmd, release, err := g.command(bin, args...)
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &agentProcess{cmd: cmd, cgroup: g}
	b.Cleanup(p.stop)
	return p
}

// reportAgentMemory reports the agent's memory: its resident set from
// /proc (VmRSS, RssAnon, RssFile) and, when it runs in a cgroup of its
// own, the container's usage, working set, private (anon) and
// file-backed (page cache, and of it what is mapped) memory as the
// kubelet counts them.
func reportAgentMemory(b *testing.B, p *agentProcess) {
	b.Helper()
	pid := p.cmd.Process.Pid
	b.ReportMetric(procStatusMiB(pid, "VmRSS"), "agent-rss-MiB")
	b.ReportMetric(procStatusMiB(pid, "RssAnon"), "agent-anon-MiB")
	b.ReportMetric(procStatusMiB(pid, "RssFile"), "agent-file-MiB")
	if p.cgroup == nil {
		return
	}
	if procs, _ := os.ReadFile(filepath.Join(p.cgroup.dir, "cgroup.procs")); !hasWord(string(procs), strconv.Itoa(pid)) {
		b.Fatalf("agent (pid %d) is not in its cgroup %s", pid, p.cgroup.dir)
	}
	m, err := p.cgroup.memory()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(m.Usage, "container-usage-MiB")
	b.ReportMetric(m.WorkingSet, "container-working-set-MiB")
	b.ReportMetric(m.Anon, "container-anon-MiB")
	b.ReportMetric(m.File, "container-file-MiB")
	b.ReportMetric(m.FileMapped, "container-file-mapped-MiB")
}
