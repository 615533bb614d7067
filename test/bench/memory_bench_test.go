package bench

import (
	"bufio"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// BenchmarkAgentMemoryFloor reads the resident set of test/bench/floor, a
// program that links the libraries every agent needs, uses each once and
// then idles, and sets the size of its loaded segments beside the agent's.
//
// A binary's file-backed pages count in its resident set, and how many of
// them do depends on the page cache: a file just written (by `go build`,
// or by a container runtime unpacking an image) sits in large folios that
// the kernel maps whole, so touching one page maps up to 2 MiB. So the
// floor is measured twice: as `go build` left it ("written"), and after
// its page cache was dropped, so that it is read back from disk as after
// memory pressure ("reread").
func BenchmarkAgentMemoryFloor(b *testing.B) {
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "floor"})
	n := testenv.StartNATS(b)
	floor := testenv.BuildCommand(b, "./test/bench/floor")
	agent := testenv.BuildCommand(b, "./cmd/agent")

	for b.Loop() {
		b.ReportMetric(loadableMiB(b, floor), "floor-loadable-MiB")
		b.ReportMetric(loadableMiB(b, agent), "agent-loadable-MiB")
		for _, cache := range []string{"written", "reread"} {
			if cache == "reread" {
				dropPageCache(b, floor)
			}
			pid, stop := startFloor(b, floor, c.Kubeconfig, n.URL)
			time.Sleep(2 * time.Second)
			b.ReportMetric(procStatusMiB(pid, "VmRSS"), "floor-rss-"+cache+"-MiB")
			b.ReportMetric(procStatusMiB(pid, "RssAnon"), "floor-anon-"+cache+"-MiB")
			b.ReportMetric(procStatusMiB(pid, "RssFile"), "floor-file-"+cache+"-MiB")
			stop()
		}
	}
}

// startFloor runs the floor program until it has used every library.
func startFloor(b *testing.B, bin, kubeconfig, natsURL string) (pid int, stop func()) {
	cmd := exec.Command(bin, kubeconfig, natsURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		stop()
		b.Fatalf("floor program did not get ready: %q %v: %s", line, err, stderr.String())
	}
	go io.Copy(io.Discard, out)
	return cmd.Process.Pid, stop
}

// loadableMiB is the size of the segments a binary maps from its file: code,
// read-only data and the Go function tables.
func loadableMiB(b *testing.B, bin string) float64 {
	f, err := elf.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var size uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			size += p.Filesz
		}
	}
	return float64(size) / (1 << 20)
}

// dropPageCache writes a file back and drops it from the page cache, so the
// next process to map it reads it from disk.
func dropPageCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}
