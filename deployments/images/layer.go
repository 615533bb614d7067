package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the uid and gid the images run as (distroless's nonroot).
const nonroot = 65532

// layerEpoch is the modification time of every file in a layer. Being
// fixed, a layer's digest depends on its contents alone, and the base layer
// stays the same from one release to the next as long as its Debian
// package does.
var layerEpoch = time.Unix(0, 0)

// passwd and group name root and the nonroot user the images run as, whose
// home is the working directory.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n"
)

// homeDir is the nonroot user's home and the images' working directory.
const homeDir = "/home/nonroot"

// layerEntry is a directory or a file of a layer, owned by uid and gid
// Owner.
type layerEntry struct {
	Path  string
	Mode  int64
	Owner int
	Dir   bool
	Body  []byte
}

func dirEntry(path string, mode int64, owner int) layerEntry {
	return layerEntry{Path: path, Mode: mode, Owner: owner, Dir: true}
}

func fileEntry(path string, mode int64, body []byte) layerEntry {
	return layerEntry{Path: path, Mode: mode, Body: body}
}

// baseLayer holds what every image has beside its binary: the CA bundle,
// passwd and group, the nonroot user's home and /tmp (the agent unpacks
// artifacts under it by default).
func baseLayer(caBundle []byte) (v1.Layer, error) {
	return newLayer([]layerEntry{
		dirEntry("etc", 0o755, 0),
		fileEntry("etc/group", 0o644, []byte(group)),
		fileEntry("etc/passwd", 0o644, []byte(passwd)),
		dirEntry("etc/ssl", 0o755, 0),
		dirEntry("etc/ssl/certs", 0o755, 0),
		fileEntry("etc/ssl/certs/ca-certificates.crt", 0o644, caBundle),
		dirEntry("home", 0o755, 0),
		dirEntry("home/nonroot", 0o700, nonroot),
		dirEntry("tmp", 0o1777, 0),
	})
}

// binaryLayer holds the program at /usr/local/bin/NAME.
func binaryLayer(name, path string) (v1.Layer, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return newLayer([]layerEntry{
		dirEntry("usr", 0o755, 0),
		dirEntry("usr/local", 0o755, 0),
		dirEntry("usr/local/bin", 0o755, 0),
		fileEntry("usr/local/bin/"+name, 0o755, body),
	})
}

// newLayer writes entries, in their order, as a gzipped tar whose bytes
// depend on the entries alone: fixed times, numeric owners, no user or
// group names.
func newLayer(entries []layerEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Path, Mode: e.Mode, Uid: e.Owner, Gid: e.Owner, ModTime: layerEpoch, Format: tar.FormatUSTAR}
		if e.Dir {
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	uncompressed := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(uncompressed)), nil },
		tarball.WithMediaType(types.OCILayer),
		// Layers are built once a release and pulled on every node: the
		// smaller download is worth the slower compression.
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching)
}
