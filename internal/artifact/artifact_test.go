package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPackIsDeterministicAndRoundTrips(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../../test/testdata/gitops-config")); err != nil {
		t.Fatal(err)
	}
	files := []string{"charts/worker-service/values.yaml", "environments/staging/worker-service-values.yaml", "charts/worker-service/Chart.yaml"}
	a, digestA, err := Pack(root, files)
	if err != nil {
		t.Fatal(err)
	}
	// Touching the files changes their mtime, never the archive.
	for _, f := range files {
		now := time.Now().Add(time.Hour)
		if err := os.Chtimes(filepath.Join(root, f), now, now); err != nil {
			t.Fatal(err)
		}
	}
	reversed := []string{files[2], files[1], files[0], files[0]}
	b, digestB, err := Pack(root, reversed)
	if err != nil {
		t.Fatal(err)
	}
	if digestA != digestB || !bytes.Equal(a, b) {
		t.Fatalf("same files packed twice differ: %s vs %s", digestA, digestB)
	}
	if err := Verify(a, digestA); err != nil {
		t.Fatal(err)
	}
	if err := Verify(a, "sha256:00"); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Verify with a wrong digest = %v, want ErrDigestMismatch", err)
	}
	dir := t.TempDir()
	if err := Unpack(a, dir, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		want, _ := os.ReadFile(filepath.Join(root, f))
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.Equal(want, got) {
			t.Errorf("%s did not round-trip: %v", f, err)
		}
	}
}

type entry struct {
	name     string
	typeflag byte
	body     string
	linkname string
}

func archive(t testing.TB, entries ...entry) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typeflag, Size: int64(len(e.body)), Linkname: e.linkname, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestUnpackRefusesMaliciousArchives(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		limits  Limits
		wantErr error
	}{
		{"dot-dot", archive(t, entry{name: "../escape.yaml", typeflag: tar.TypeReg, body: "x"}), DefaultLimits(), ErrUnsafePath},
		{"nested dot-dot", archive(t, entry{name: "charts/../../escape.yaml", typeflag: tar.TypeReg, body: "x"}), DefaultLimits(), ErrUnsafePath},
		{"absolute", archive(t, entry{name: "/etc/cron.d/x", typeflag: tar.TypeReg, body: "x"}), DefaultLimits(), ErrUnsafePath},
		{"symlink", archive(t, entry{name: "link", typeflag: tar.TypeSymlink, linkname: "/etc"}), DefaultLimits(), ErrUnsafePath},
		{"hard link", archive(t, entry{name: "link", typeflag: tar.TypeLink, linkname: "/etc/passwd"}), DefaultLimits(), ErrUnsafePath},
		{"too many files", archive(t, entry{name: "a", typeflag: tar.TypeReg}, entry{name: "b", typeflag: tar.TypeReg}), Limits{MaxArchive: 1 << 20, MaxTotal: 1 << 20, MaxFiles: 1}, ErrTooLarge},
		{"bomb", archive(t, entry{name: "big", typeflag: tar.TypeReg, body: string(make([]byte, 1<<20))}), Limits{MaxArchive: 1 << 20, MaxTotal: 1 << 10, MaxFiles: 10}, ErrTooLarge},
		{"compressed too large", archive(t, entry{name: "a", typeflag: tar.TypeReg, body: "x"}), Limits{MaxArchive: 10, MaxTotal: 1 << 20, MaxFiles: 10}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Unpack(tc.data, dir, tc.limits)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Unpack = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(archive(f, entry{name: "charts/a/Chart.yaml", typeflag: tar.TypeReg, body: "name: a"}))
	f.Add(archive(f, entry{name: "../x", typeflag: tar.TypeReg, body: "x"}))
	f.Add(archive(f, entry{name: "d/", typeflag: tar.TypeDir}, entry{name: "d/f", typeflag: tar.TypeReg, body: "y"}))
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "out")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = Unpack(data, dir, Limits{MaxArchive: 1 << 20, MaxTotal: 1 << 20, MaxFiles: 100})
		// Whatever happened, nothing may exist beside dir.
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("unpack wrote outside its directory: %v", entries)
		}
	})
}
