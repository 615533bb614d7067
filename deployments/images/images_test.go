package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"
)

// testVersion is the version the tests build, to see it stamped.
const testVersion = "1.2.3-test"

// hostPlatform is the platform whose binaries run here.
func hostPlatform(t *testing.T) v1.Platform {
	t.Helper()
	switch runtime.GOOS + "/" + runtime.GOARCH {
	case "linux/amd64":
		return v1.Platform{OS: "linux", Architecture: "amd64"}
	case "linux/arm64":
		return v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	}
	t.Skipf("the images are for linux/amd64 and linux/arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	return v1.Platform{}
}

// TestImages builds the hub and agent images for the host's platform the
// way `make images` builds them, then looks at them as a user finds them in
// the layout: by reference, then platform. It checks the config, the
// layers' files, the SBOM that refers to the image, and that the binary
// runs and prints its flags.
func TestImages(t *testing.T) {
	host := hostPlatform(t)
	opts := DefaultOptions()
	opts.Out = filepath.Join(t.TempDir(), "layout")
	opts.Version = testVersion
	opts.Platforms = []v1.Platform{host}
	if _, err := Build(t.Context(), opts, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		spec  ImageSpec
		flags []string // some of the flags its --help must name
	}{
		{name: "hub", spec: FlotillaImages[0], flags: []string{"-config", "-data-dir", "-listen", "-nats-url"}},
		{name: "agent", spec: FlotillaImages[1], flags: []string{"-credentials", "-kubeconfig", "-cache-dir", "-nats-url"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := imageFromLayout(t, opts.Out, tc.spec.Ref(testVersion), host)
			checkConfig(t, img, tc.spec, host)

			files := layerFiles(t, img)
			checkBaseLayer(t, files)
			binPath := "usr/local/bin/" + tc.spec.Name
			bin, ok := files[binPath]
			if !ok {
				t.Fatalf("no %s in the image", binPath)
			}
			if bin.Mode != 0o755 || bin.Uid != 0 || bin.Gid != 0 {
				t.Errorf("%s: mode %o owner %d:%d, want 755 0:0", binPath, bin.Mode, bin.Uid, bin.Gid)
			}
			checkBuildSettings(t, bin.Body, tc.spec)

			digest, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			checkSBOM(t, opts.Out, img, digest)
			checkHelp(t, bin.Body, tc.spec.Name, tc.flags)
		})
	}
}

// TestCrossPlatformImage builds the agent for the platform the host is not
// (its binary can't run here) and checks the platform of its index entry
// and config, and that the binary is a static ELF for that architecture.
func TestCrossPlatformImage(t *testing.T) {
	other, machine := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, elf.EM_AARCH64
	if hostPlatform(t).Architecture == "arm64" {
		other, machine = v1.Platform{OS: "linux", Architecture: "amd64"}, elf.EM_X86_64
	}
	agent := FlotillaImages[1]
	opts := DefaultOptions()
	opts.Out = filepath.Join(t.TempDir(), "layout")
	opts.Version = testVersion
	opts.Platforms = []v1.Platform{other}
	opts.Images = []ImageSpec{agent}
	if _, err := Build(t.Context(), opts, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}

	img := imageFromLayout(t, opts.Out, agent.Ref(testVersion), other)
	checkConfig(t, img, agent, other)
	bin := layerFiles(t, img)["usr/local/bin/"+agent.Name]
	f, err := elf.NewFile(bytes.NewReader(bin.Body))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != machine {
		t.Errorf("binary is for %s, want %s", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a program interpreter: it is not static")
		}
	}
}

// imageFromLayout finds the image tagged ref in the layout at dir and
// returns its platform image.
func imageFromLayout(t *testing.T, dir, ref string, platform v1.Platform) v1.Image {
	t.Helper()
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	rootManifest, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range rootManifest.Manifests {
		if desc.Annotations[ocispec.AnnotationRefName] != ref {
			continue
		}
		idx, err := root.ImageIndex(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Annotations[ocispec.AnnotationVersion] != testVersion {
			t.Errorf("index version annotation %q, want %q", m.Annotations[ocispec.AnnotationVersion], testVersion)
		}
		for _, entry := range m.Manifests {
			if entry.Platform != nil && entry.Platform.Equals(platform) {
				img, err := idx.Image(entry.Digest)
				if err != nil {
					t.Fatal(err)
				}
				return img
			}
		}
		t.Fatalf("%s has no image for %s", ref, platform)
	}
	t.Fatalf("the layout tags no image %s", ref)
	return nil
}

func checkConfig(t *testing.T, img v1.Image, spec ImageSpec, platform v1.Platform) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if diff := cmp.Diff(platform, got); diff != "" {
		t.Errorf("config platform (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/usr/local/bin/" + spec.Name}, cf.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if cf.Config.User != "65532:65532" || cf.Config.WorkingDir != "/home/nonroot" {
		t.Errorf("user %q in %q, want 65532:65532 in /home/nonroot", cf.Config.User, cf.Config.WorkingDir)
	}
	labels := cf.Config.Labels
	for key, want := range map[string]string{
		ocispec.AnnotationTitle:   spec.Name,
		ocispec.AnnotationSource:  "https://github.com/flotilla-dev/flotilla",
		ocispec.AnnotationVersion: testVersion,
		ocispec.AnnotationCreated: cf.Created.UTC().Format("2006-01-02T15:04:05Z"),
	} {
		if labels[key] != want {
			t.Errorf("label %s = %q, want %q", key, labels[key], want)
		}
	}
	if len(labels[ocispec.AnnotationRevision]) != 40 || labels[ocispec.AnnotationDescription] == "" {
		t.Errorf("labels lack a commit or a description: %v", labels)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(labels, m.Annotations); diff != "" {
		t.Errorf("manifest annotations differ from the labels (-labels +annotations):\n%s", diff)
	}
}

// layerFile is a file of an image, from its layer's tar.
type layerFile struct {
	*tar.Header
	Body []byte
}

// layerFiles reads every layer of img; all its entries must have the fixed
// time.
func layerFiles(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]layerFile{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if !hdr.ModTime.Equal(layerEpoch) {
				t.Errorf("%s: modified %s, want the fixed %s", hdr.Name, hdr.ModTime, layerEpoch)
			}
			files[strings.TrimSuffix(hdr.Name, "/")] = layerFile{Header: hdr, Body: body}
		}
		rc.Close()
	}
	return files
}

func checkBaseLayer(t *testing.T, files map[string]layerFile) {
	t.Helper()
	if !strings.Contains(string(files["etc/passwd"].Body), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", files["etc/passwd"].Body)
	}
	if !strings.Contains(string(files["etc/group"].Body), "nonroot:x:65532:") {
		t.Errorf("/etc/group has no group 65532:\n%s", files["etc/group"].Body)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(files["etc/ssl/certs/ca-certificates.crt"].Body) {
		t.Error("/etc/ssl/certs/ca-certificates.crt holds no certificate")
	}
	if home := files["home/nonroot"]; home.Header == nil || home.Uid != nonroot || home.Gid != nonroot {
		t.Errorf("/home/nonroot is missing or not owned by %d", nonroot)
	}
	if tmp := files["tmp"]; tmp.Header == nil || tmp.Mode != 0o1777 {
		t.Error("/tmp is missing or not world-writable and sticky")
	}
}

// checkBuildSettings checks the binary is a static, -trimpath build, with
// the version stamped where the program has a variable for it.
func checkBuildSettings(t *testing.T, binary []byte, spec ImageSpec) {
	t.Helper()
	info, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	// With -trimpath the build info keeps no -ldflags: the version string
	// in the binary is what -X put there.
	if spec.VersionVar != "" && !bytes.Contains(binary, []byte(testVersion)) {
		t.Errorf("the binary has no %s: -X did not set %s", testVersion, spec.VersionVar)
	}
}

// checkSBOM looks the image's SBOM up as `oras discover` does, among the
// referrers of the image in the layout, and reads its SPDX.
func checkSBOM(t *testing.T, dir string, img v1.Image, imgDigest v1.Hash) {
	t.Helper()
	ctx := t.Context()
	store, err := oci.NewFromFS(ctx, os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	size, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(imgDigest.String()), Size: size}
	referrers, err := registry.Referrers(ctx, store, subject, string(spdxMediaType))
	if err != nil {
		t.Fatal(err)
	}
	if len(referrers) != 1 {
		t.Fatalf("%d SPDX referrers of %s, want 1", len(referrers), imgDigest)
	}
	raw, err := content.FetchAll(ctx, store, referrers[0])
	if err != nil {
		t.Fatal(err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest.Layers) != 1 {
		t.Fatalf("SBOM artifact has %d blobs, want 1", len(manifest.Layers))
	}
	raw, err = content.FetchAll(ctx, store, manifest.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != v2_3.Version {
		t.Errorf("SBOM is %s, want %s", doc.SPDXVersion, v2_3.Version)
	}
	versions := map[string]string{}
	for _, p := range doc.Packages {
		versions[p.PackageName] = p.PackageVersion
	}
	for _, name := range []string{"github.com/flotilla-dev/flotilla", "github.com/nats-io/nats.go", "stdlib", "ca-certificates"} {
		if versions[name] == "" {
			t.Errorf("SBOM lists no %s with a version", name)
		}
	}
}

// checkHelp runs the binary with --help: it exits 0 and names its flags.
func checkHelp(t *testing.T, binary []byte, name string, flags []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), path, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", name, err, out)
	}
	for _, f := range flags {
		if !strings.Contains(string(out), "  "+f+" ") {
			t.Errorf("%s --help does not name %s:\n%s", name, f, out)
		}
	}
}
