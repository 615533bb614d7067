package main

import (
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sourceURL is Flotilla's repository, the images' source label.
const sourceURL = "https://github.com/flotilla-dev/flotilla"

// imageLabels are an image's OCI labels, which its index and manifests
// carry as annotations too. The creation time is the commit's.
func imageLabels(spec ImageSpec, version string, src Source, licenses string) map[string]string {
	labels := map[string]string{
		ocispec.AnnotationTitle:       spec.Name,
		ocispec.AnnotationDescription: spec.Description,
		ocispec.AnnotationSource:      sourceURL,
		ocispec.AnnotationVersion:     version,
		ocispec.AnnotationRevision:    src.Revision,
		ocispec.AnnotationCreated:     src.Time.UTC().Format(time.RFC3339),
	}
	if licenses != "" {
		labels[ocispec.AnnotationLicenses] = licenses
	}
	return labels
}

// platformImage is spec's image for one platform: from scratch, the base
// layer, then the binary's layer; it runs the binary as nonroot in its home.
func platformImage(base, binary v1.Layer, spec ImageSpec, platform v1.Platform, labels map[string]string, created time.Time) (v1.Image, error) {
	step := func(by string) v1.History {
		return v1.History{Created: v1.Time{Time: created.UTC()}, CreatedBy: by}
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(img,
		mutate.Addendum{Layer: base, History: step("deployments/images: Debian's CA certificates, the nonroot user")},
		mutate.Addendum{Layer: binary, History: step("deployments/images: go build " + spec.Package)})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Created = v1.Time{Time: created.UTC()}
	cf.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/" + spec.Name},
		User:       "65532:65532",
		WorkingDir: homeDir,
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels:     labels,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// PlatformImage is one platform's image of an index.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
}

// imageIndex lists an image's platform images, in the order given.
func imageIndex(images []PlatformImage, labels map[string]string) v1.ImageIndex {
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, pi := range images {
		adds = append(adds, mutate.IndexAddendum{Add: pi.Image, Descriptor: v1.Descriptor{Platform: &pi.Platform}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return mutate.Annotations(idx, labels).(v1.ImageIndex)
}
