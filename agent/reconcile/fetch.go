package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flotilla-dev/flotilla/internal/artifact"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// unpacked returns the directory of an artifact, fetching, verifying and
// unpacking it into the cache on first use.
func (s *Syncer) unpacked(ctx context.Context, a *flotillav1.Artifact) (string, error) {
	digest := a.GetDigest()
	if !strings.HasPrefix(digest, artifact.DigestPrefix) || len(digest) != len(artifact.DigestPrefix)+64 {
		return "", fmt.Errorf("artifact digest %q is malformed", digest)
	}
	dir := filepath.Join(s.opts.CacheDir, strings.TrimPrefix(digest, artifact.DigestPrefix))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if a.GetSize() > s.opts.Limits.MaxArchive {
		return "", fmt.Errorf("artifact %s: %w: %d bytes, limit %d", digest, artifact.ErrTooLarge, a.GetSize(), s.opts.Limits.MaxArchive)
	}
	data, err := s.archive(ctx, a)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(s.opts.CacheDir, ".unpack-")
	if err != nil {
		return "", err
	}
	if err := artifact.Unpack(data, tmp, s.opts.Limits); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("artifact %s: %w", digest, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // another sync of the same artifact won
		}
		return "", err
	}
	return dir, nil
}

// archive is a's archive, verified against its digest: the one the
// desired state carries inline, else the artifact store's. An inline
// archive that does not match is the desired state's fault, not the
// transport's, and is not retried.
func (s *Syncer) archive(ctx context.Context, a *flotillav1.Artifact) ([]byte, error) {
	if inline := a.GetInline(); len(inline) > 0 {
		if len(inline) > artifact.MaxInline {
			return nil, fmt.Errorf("artifact %s: %w: %d bytes inline, limit %d", a.GetDigest(), artifact.ErrTooLarge, len(inline), artifact.MaxInline)
		}
		if err := artifact.Verify(inline, a.GetDigest()); err != nil {
			return nil, fmt.Errorf("artifact %s inline: %w", a.GetDigest(), err)
		}
		return inline, nil
	}
	data, err := s.deps.Artifacts.GetArtifact(ctx, a.GetDigest())
	if err == nil {
		err = artifact.Verify(data, a.GetDigest())
	}
	if err != nil {
		return nil, fetchError{err}
	}
	return data, nil
}

// fetchError is an artifact the hub's store did not give, or gave wrong:
// the fleet's transport failed (NATS overloaded or restarting, the
// artifact not yet or no longer there), not the application.
type fetchError struct{ err error }

func (e fetchError) Error() string { return e.err.Error() }
func (e fetchError) Unwrap() error { return e.err }
