package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-dev/flotilla/internal/artifact"
)

// HasArtifact reports whether an artifact is stored.
func (b *Bus) HasArtifact(ctx context.Context, digest string) (bool, error) {
	_, err := b.artifacts.GetInfo(ctx, digest)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("artifact %s: %w", digest, err)
	}
	return true, nil
}

// ArtifactIntact reports whether the stored artifact digest is there and
// its content hashes to its digest (the object store also checks its own
// digest as it reads).
func (b *Bus) ArtifactIntact(ctx context.Context, digest string) (bool, error) {
	data, err := b.artifacts.GetBytes(ctx, digest)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return false, nil
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("artifact %s: %w", digest, err)
	}
	return artifact.Digest(data) == digest, nil
}

// PutArtifact stores an artifact under its digest unless it is there
// already. It reports whether it wrote.
func (b *Bus) PutArtifact(ctx context.Context, digest string, data []byte) (bool, error) {
	if has, err := b.HasArtifact(ctx, digest); has || err != nil {
		return false, err
	}
	meta := jetstream.ObjectMeta{Name: digest, Opts: &jetstream.ObjectMetaOptions{ChunkSize: artifactChunkSize(b.nc.MaxPayload())}}
	if _, err := b.artifacts.Put(ctx, meta, bytes.NewReader(data)); err != nil {
		return false, fmt.Errorf("store artifact %s: %w", digest, err)
	}
	return true, nil
}

// artifactChunkSize is the chunk size artifacts are stored with: as large
// as the server's maximum payload allows (less room for headers), so that
// most artifacts are one chunk, which an agent reads with a single direct
// get (GetArtifact) instead of a consumer the server creates and deletes.
// Never below the object store's default of 128 KiB.
func artifactChunkSize(maxPayload int64) uint32 {
	const headerRoom, floor = 16 << 10, 128 << 10
	return uint32(max(min(maxPayload-headerRoom, 64<<20), floor))
}

// ListArtifacts returns the digests of every stored artifact.
func (b *Bus) ListArtifacts(ctx context.Context) ([]string, error) {
	infos, err := b.artifacts.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(infos))
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out, nil
}

// DeleteArtifact removes an artifact; one that is not there is no error.
func (b *Bus) DeleteArtifact(ctx context.Context, digest string) error {
	if err := b.artifacts.Delete(ctx, digest); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete artifact %s: %w", digest, err)
	}
	return nil
}
