package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Errors an unpack returns; each is wrapped with the entry involved.
var (
	// ErrUnsafePath is an entry that is absolute, contains "..", or is not
	// a plain file or directory (links, devices).
	ErrUnsafePath = errors.New("unsafe path in artifact")
	// ErrTooLarge is an archive over Limits.
	ErrTooLarge = errors.New("artifact too large")
	// ErrDigestMismatch is an archive whose bytes do not match its digest.
	ErrDigestMismatch = errors.New("artifact digest mismatch")
)

// MaxInline is the largest archive a desired state carries inline
// (Artifact.inline) rather than by digest alone: plain manifests and
// small overlays, a few hundred bytes compressed, travel with the desired
// state; a chart's archive is fetched.
const MaxInline = 4 << 10

// Limits bound what an unpack may write.
type Limits struct {
	// MaxArchive is the compressed size.
	MaxArchive int64
	// MaxTotal is the sum of the unpacked file sizes.
	MaxTotal int64
	// MaxFiles is the number of entries.
	MaxFiles int
}

// DefaultLimits fit the largest real charts with room to spare (a big
// umbrella chart is a few MiB) while stopping a decompression bomb early.
func DefaultLimits() Limits {
	return Limits{MaxArchive: 32 << 20, MaxTotal: 256 << 20, MaxFiles: 20000}
}

// Verify checks that data has the expected digest.
func Verify(data []byte, digest string) error {
	if got := Digest(data); got != digest {
		return fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, digest, got)
	}
	return nil
}

// Unpack extracts a tar.gz into dir, which must exist and be empty. Only
// regular files and directories are allowed; nothing is written outside dir.
func Unpack(data []byte, dir string, limits Limits) error {
	return walk(data, limits, func(name string, isDir bool, r io.Reader) error {
		target := filepath.Join(dir, filepath.FromSlash(name))
		if isDir {
			return os.MkdirAll(target, 0o755)
		}
		if err := mkdirInside(dir, filepath.Dir(target)); err != nil {
			return err
		}
		if _, err := writeFile(target, r); err != nil {
			return fmt.Errorf("unpack %q: %w", name, err)
		}
		return nil
	})
}

// Files lists the regular files of a tar.gz, checked as Unpack checks them.
func Files(data []byte, limits Limits) ([]string, error) {
	var files []string
	err := walk(data, limits, func(name string, isDir bool, _ io.Reader) error {
		if !isDir {
			files = append(files, name)
		}
		return nil
	})
	return files, err
}

// walk calls fn for every entry of a tar.gz after checking it against
// limits: a safe relative name, a file or directory, sizes in bounds. A
// file's reader yields at most its declared size.
func walk(data []byte, limits Limits, fn func(name string, isDir bool, r io.Reader) error) error {
	if int64(len(data)) > limits.MaxArchive {
		return fmt.Errorf("%w: %d bytes compressed, limit %d", ErrTooLarge, len(data), limits.MaxArchive)
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("artifact is not gzip: %w", err)
	}
	tr := tar.NewReader(gz)
	var total int64
	for files := 0; ; files++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("artifact is not a valid tar: %w", err)
		}
		if files >= limits.MaxFiles {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, limits.MaxFiles)
		}
		name := hdr.Name
		if hdr.Typeflag == tar.TypeDir {
			name = trimSlash(name)
		}
		if err := checkName(name); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = fn(name, true, nil)
		case tar.TypeReg:
			if hdr.Size < 0 || total+hdr.Size > limits.MaxTotal {
				return fmt.Errorf("%w: unpacked size over %d bytes at %q", ErrTooLarge, limits.MaxTotal, name)
			}
			total += hdr.Size
			err = fn(name, false, io.LimitReader(tr, hdr.Size))
		default:
			return fmt.Errorf("%w: %q is a %s, only files and directories are allowed", ErrUnsafePath, name, typeName(hdr.Typeflag))
		}
		if err != nil {
			return err
		}
	}
}

// mkdirInside creates dir's missing parents, refusing to follow an existing
// symlink (none can exist, since links are refused, but be sure).
func mkdirInside(root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(realRoot, real)
	if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == ".."+string(filepath.Separator) {
		return fmt.Errorf("%w: %q", ErrUnsafePath, dir)
	}
	return nil
}

func writeFile(path string, r io.Reader) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func trimSlash(s string) string {
	for len(s) > 1 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("entry of type %q", t)
}
