package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// emptyJSON is the config blob of an artifact that has no config.
var emptyJSON = []byte("{}")

// referrer is an OCI 1.1 artifact that refers to another manifest, its
// subject: a manifest with an artifactType, the empty config and one blob.
// Registries list it under the subject's referrers, and so do `oras
// discover` and oras-go on a layout. go-containerregistry has no setter
// for a manifest's artifactType, so the manifest is written here and
// partial turns it into a v1.Image that layout writes like any other.
type referrer struct {
	manifest []byte
	blob     v1.Layer
}

// newReferrer makes the artifact of type artifactType holding blob, named
// title, that refers to subject.
func newReferrer(subject v1.Descriptor, artifactType types.MediaType, blob []byte, title string, annotations map[string]string) (v1.Image, error) {
	layer := static.NewLayer(blob, artifactType)
	blobDigest, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	configDigest, _, err := v1.SHA256(bytes.NewReader(emptyJSON))
	if err != nil {
		return nil, err
	}
	manifest, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  string(artifactType),
		Config:        v1.Descriptor{MediaType: types.OCIEmptyJSON, Size: int64(len(emptyJSON)), Digest: configDigest, Data: emptyJSON},
		Layers: []v1.Descriptor{{MediaType: artifactType, Size: int64(len(blob)), Digest: blobDigest,
			Annotations: map[string]string{ocispec.AnnotationTitle: title}}},
		Subject:     &v1.Descriptor{MediaType: subject.MediaType, Size: subject.Size, Digest: subject.Digest},
		Annotations: annotations,
	})
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(referrer{manifest: manifest, blob: layer})
}

func (r referrer) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (r referrer) RawManifest() ([]byte, error)        { return r.manifest, nil }
func (r referrer) RawConfigFile() ([]byte, error)      { return emptyJSON, nil }

func (r referrer) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if d, err := r.blob.Digest(); err != nil || d != h {
		return nil, fmt.Errorf("artifact has no blob %s", h)
	}
	return r.blob, nil
}
