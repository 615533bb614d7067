package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DigestPrefix starts every artifact digest.
const DigestPrefix = "sha256:"

// Digest returns the artifact digest of data: "sha256:<hex>".
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// epoch is the modification time of every entry: a fixed time keeps the
// archive (and so its digest) independent of when and where it was packed.
var epoch = time.Unix(0, 0).UTC()

// File is one file to pack: its name in the archive (a clean relative
// slash path) and where it is read from.
type File struct {
	Name string
	Path string
}

// Pack writes the files (slash paths relative to root) into a tar.gz with
// sorted entries, fixed times, owners and modes, so the same files always
// give the same bytes. It returns the archive and its digest.
func Pack(root string, files []string) ([]byte, string, error) {
	entries := make([]File, len(files))
	for i, name := range files {
		entries[i] = File{Name: name, Path: filepath.Join(root, filepath.FromSlash(name))}
	}
	return PackFiles(entries)
}

// PackFiles is Pack for files from anywhere, named as they are to be in
// the archive. A name given twice is packed once.
func PackFiles(files []File) ([]byte, string, error) {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	sorted = slices.CompactFunc(sorted, func(a, b File) bool { return a.Name == b.Name })

	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, "", err
	}
	tw := tar.NewWriter(gz)
	for _, f := range sorted {
		name := f.Name
		if err := checkName(name); err != nil {
			return nil, "", err
		}
		info, err := os.Lstat(f.Path)
		if err != nil {
			return nil, "", fmt.Errorf("pack %s: %w", name, err)
		}
		if !info.Mode().IsRegular() {
			return nil, "", fmt.Errorf("pack %s: not a regular file", name)
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, "", fmt.Errorf("pack %s: %w", name, err)
		}
		hdr := &tar.Header{
			Name:     name,
			Mode:     0o644,
			Size:     int64(len(data)),
			ModTime:  epoch,
			Typeflag: tar.TypeReg,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := gz.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), Digest(buf.Bytes()), nil
}

// checkName refuses names that are not clean relative slash paths.
func checkName(name string) error {
	if name == "" || path.IsAbs(name) || strings.Contains(name, "\\") || path.Clean(name) != name ||
		name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("%w: %q", ErrUnsafePath, name)
	}
	return nil
}
