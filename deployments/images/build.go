package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuiltImage is an image written to the layout.
type BuiltImage struct {
	Ref string
	// Index is the digest of the image's index, which the layout tags Ref.
	Index     v1.Hash
	Platforms []BuiltPlatform
}

// BuiltPlatform is one platform's image of a BuiltImage.
type BuiltPlatform struct {
	Platform v1.Platform
	Digest   v1.Hash
	// Size is what a pull downloads: manifest, config and compressed layers.
	Size int64
	// SBOM is the digest of the SBOM artifact that refers to the image.
	SBOM v1.Hash
}

// Build builds every image of opts for every platform and writes them,
// with their SBOMs, to the OCI image layout opts.Out, which it replaces.
// In the layout's index.json each image's index is tagged with its
// reference (org.opencontainers.image.ref.name, and io.containerd.image.name
// for containerd's import) and each SBOM artifact is listed untagged, where
// referrer lookups find it.
func Build(ctx context.Context, opts Options, log *slog.Logger) ([]BuiltImage, error) {
	for _, spec := range opts.Images {
		if _, err := name.NewTag(spec.Ref(opts.Version), name.StrictValidation); err != nil {
			return nil, fmt.Errorf("version %q: %w", opts.Version, err)
		}
	}
	certs, err := debianPackage(ctx, "ca-certificates")
	if err != nil {
		return nil, err
	}
	bundle, err := caBundle(certs)
	if err != nil {
		return nil, err
	}
	base, err := baseLayer(bundle)
	if err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "flotilla-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)
	if err := removeLayout(opts.Out); err != nil {
		return nil, err
	}
	out, err := layout.Write(opts.Out, empty.Index)
	if err != nil {
		return nil, err
	}

	var built []BuiltImage
	for _, spec := range opts.Images {
		b, err := buildImage(ctx, opts, spec, base, []DebianPackage{certs}, binDir, out, log)
		if err != nil {
			return nil, err
		}
		built = append(built, b)
	}
	return built, nil
}

// buildImage builds spec's platform images, their index and SBOMs, and
// appends them to the layout out: one image at a time, so that only one
// image's binaries are held in memory.
func buildImage(ctx context.Context, opts Options, spec ImageSpec, base v1.Layer, debs []DebianPackage, binDir string, out layout.Path, log *slog.Logger) (BuiltImage, error) {
	ref := spec.Ref(opts.Version)
	var (
		images    []PlatformImage
		sboms     []v1.Image
		platforms []BuiltPlatform
		labels    map[string]string
	)
	for _, platform := range opts.Platforms {
		log.Info("building", "image", spec.Name, "platform", platform.String())
		bin, err := buildBinary(ctx, spec, platform, opts.Version, binDir)
		if err != nil {
			return BuiltImage{}, err
		}
		src, err := sourceOf(bin.Info)
		if err != nil {
			return BuiltImage{}, fmt.Errorf("%s: %w", spec.Name, err)
		}
		if src.Modified {
			log.Warn("the work tree has uncommitted changes: the image is not what its commit builds", "image", spec.Name, "revision", src.Revision)
		}
		layer, err := binaryLayer(spec.Name, bin.Path)
		if err != nil {
			return BuiltImage{}, fmt.Errorf("%s: %w", spec.Name, err)
		}
		labels = imageLabels(spec, opts.Version, src, opts.Licenses)
		img, err := platformImage(base, layer, spec, platform, labels, src.Time)
		if err != nil {
			return BuiltImage{}, fmt.Errorf("%s for %s: %w", spec.Name, platform, err)
		}
		desc, err := partial.Descriptor(img)
		if err != nil {
			return BuiltImage{}, fmt.Errorf("%s for %s: %w", spec.Name, platform, err)
		}
		doc, err := newSBOM(SBOMSubject{Spec: spec, Version: opts.Version, Platform: platform, Digest: desc.Digest,
			Binary: bin.Info, Source: src, Licenses: opts.Licenses, Debian: debs})
		if err != nil {
			return BuiltImage{}, err
		}
		sbomJSON, err := encodeSBOM(doc)
		if err != nil {
			return BuiltImage{}, fmt.Errorf("%s SBOM: %w", spec.Name, err)
		}
		title := fmt.Sprintf("%s-%s-%s.spdx.json", spec.Name, opts.Version, strings.ReplaceAll(platform.String(), "/", "-"))
		sbom, err := newReferrer(*desc, spdxMediaType, sbomJSON, title, map[string]string{ocispec.AnnotationCreated: labels[ocispec.AnnotationCreated]})
		if err != nil {
			return BuiltImage{}, fmt.Errorf("%s SBOM: %w", spec.Name, err)
		}
		sbomDigest, err := sbom.Digest()
		if err != nil {
			return BuiltImage{}, err
		}
		size, err := pullSize(img, desc.Size)
		if err != nil {
			return BuiltImage{}, err
		}
		images = append(images, PlatformImage{Platform: platform, Image: img})
		sboms = append(sboms, sbom)
		platforms = append(platforms, BuiltPlatform{Platform: platform, Digest: desc.Digest, Size: size, SBOM: sbomDigest})
	}

	idx := imageIndex(images, labels)
	if err := out.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		ocispec.AnnotationRefName:  ref,
		"io.containerd.image.name": ref,
	})); err != nil {
		return BuiltImage{}, fmt.Errorf("%s: writing the layout: %w", ref, err)
	}
	for _, sbom := range sboms {
		if err := out.AppendImage(sbom); err != nil {
			return BuiltImage{}, fmt.Errorf("%s SBOM: writing the layout: %w", ref, err)
		}
	}
	digest, err := idx.Digest()
	if err != nil {
		return BuiltImage{}, err
	}
	return BuiltImage{Ref: ref, Index: digest, Platforms: platforms}, nil
}

// removeLayout removes the OCI image layout at dir, if there is one, and
// refuses to remove anything else: -out . must not take the work tree.
func removeLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) == 0:
		return nil // layout.Write fills it
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("%s is not an OCI image layout to replace: %w", dir, err)
	}
	return os.RemoveAll(dir)
}

// pullSize adds the sizes of img's config and layers to its manifest's.
func pullSize(img v1.Image, manifestSize int64) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	size := manifestSize + m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}
