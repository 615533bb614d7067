package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// BinDirEnv overrides where the test binaries (kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler, kwok and kwok's stage files) are.
const BinDirEnv = "FLOTILLA_TEST_BINS"

var (
	repoRootOnce sync.Once
	repoRoot     string
	repoRootErr  error
)

// RepoRoot returns the directory holding Flotilla's go.mod.
func RepoRoot(t TB) string {
	t.Helper()
	repoRootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			repoRootErr = err
			return
		}
		for {
			if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isFlotillaModule(data) {
				repoRoot = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				repoRootErr = fmt.Errorf("no Flotilla go.mod above the working directory")
				return
			}
			dir = parent
		}
	})
	if repoRootErr != nil {
		t.Fatalf("testenv: %v", repoRootErr)
	}
	return repoRoot
}

func isFlotillaModule(goMod []byte) bool {
	const want = "module github.com/flotilla-dev/flotilla\n"
	return len(goMod) >= len(want) && string(goMod[:len(want)]) == want
}

// BinDir returns the directory of the test binaries built by `make test-bins`,
// failing the test with a pointer to that command when one is missing.
func BinDir(t TB, need ...string) string {
	t.Helper()
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "bin", "k8s")
	}
	for _, name := range need {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("testenv: %s is missing in %s: run `make test-bins` (or set %s)", name, dir, BinDirEnv)
		}
	}
	return dir
}

// Fixture returns the path of a directory under test/testdata.
func Fixture(t TB, name string) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), "test", "testdata", name)
}
