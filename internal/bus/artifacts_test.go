package bus

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestArtifacts(t *testing.T) {
	b := newBus(t)
	ctx := t.Context()
	if got, err := b.ListArtifacts(ctx); err != nil || got != nil {
		t.Fatalf("ListArtifacts of an empty store = %v, %v; want nil, nil", got, err)
	}

	// Put writes once per digest and says so.
	for _, tc := range []struct {
		digest    string
		data      string
		wantWrote bool
	}{
		{digest: "sha256:aa", data: "first", wantWrote: true},
		{digest: "sha256:bb", data: "second", wantWrote: true},
		{digest: "sha256:aa", data: "first", wantWrote: false},
	} {
		wrote, err := b.PutArtifact(ctx, tc.digest, []byte(tc.data))
		if err != nil || wrote != tc.wantWrote {
			t.Errorf("PutArtifact(%s) = %t, %v; want %t", tc.digest, wrote, err, tc.wantWrote)
		}
	}
	if data, err := b.GetArtifact(ctx, "sha256:aa"); err != nil || string(data) != "first" {
		t.Errorf("GetArtifact = %q, %v; want first", data, err)
	}
	// Artifacts are one chunk up to the server's maximum payload (read
	// with a direct get), several beyond it (read with a consumer).
	chunk := int(artifactChunkSize(b.nc.MaxPayload()))
	for _, size := range []int{chunk, chunk + 1, 3*chunk + 7} {
		data := bytes.Repeat([]byte{byte(size)}, size)
		digest := fmt.Sprintf("sha256:size-%d", size)
		if _, err := b.PutArtifact(ctx, digest, data); err != nil {
			t.Fatalf("PutArtifact of %d bytes: %v", size, err)
		}
		info, err := b.artifacts.GetInfo(ctx, digest)
		if err != nil {
			t.Fatal(err)
		}
		if want := uint32((size + chunk - 1) / chunk); info.Chunks != want {
			t.Errorf("%d bytes stored in %d chunks, want %d", size, info.Chunks, want)
		}
		if got, err := b.GetArtifact(ctx, digest); err != nil || !bytes.Equal(got, data) {
			t.Errorf("GetArtifact of %d bytes = %d bytes, %v", size, len(got), err)
		}
		if err := b.DeleteArtifact(ctx, digest); err != nil {
			t.Fatal(err)
		}
	}
	if has, err := b.HasArtifact(ctx, "sha256:bb"); err != nil || !has {
		t.Errorf("HasArtifact(stored) = %t, %v", has, err)
	}
	got, err := b.ListArtifacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"sha256:aa", "sha256:bb"}, got); diff != "" {
		t.Errorf("ListArtifacts (-want +got):\n%s", diff)
	}

	// After a delete the artifact is gone; deleting what is not there is
	// no error.
	for range 2 {
		if err := b.DeleteArtifact(ctx, "sha256:aa"); err != nil {
			t.Errorf("DeleteArtifact: %v", err)
		}
	}
	if _, err := b.GetArtifact(ctx, "sha256:aa"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetArtifact of a deleted artifact = %v, want ErrNotFound", err)
	}
	if has, err := b.HasArtifact(ctx, "sha256:aa"); err != nil || has {
		t.Errorf("HasArtifact(deleted) = %t, %v; want false, nil", has, err)
	}
	if _, err := b.GetArtifact(ctx, "sha256:never"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetArtifact of an artifact never stored = %v, want ErrNotFound", err)
	}
}
