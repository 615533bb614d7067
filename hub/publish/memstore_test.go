package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// memStore is the desired-state bucket (every put retained, in stream
// order) and the artifact store in memory, for tests of the Publisher's
// logic that need no NATS server. The Store contract itself is tested
// against the embedded NATS server in internal/bus.
type memStore struct {
	mu        sync.Mutex
	seq       uint64
	entries   []bus.DesiredEntry
	artifacts map[string][]byte
	// accept, when not negative, is how many more puts the store takes
	// before it fails the rest (JetStream going away mid-publish).
	accept int
}

func newMemStore() *memStore { return &memStore{artifacts: map[string][]byte{}, accept: -1} }

// put appends env under (cluster, app) as anyone with write access to the
// bucket could: nothing checks it. It returns the entry's revision.
func (m *memStore) put(cluster, app string, env *flotillav1.SignedDesiredState) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.entries = append(m.entries, bus.DesiredEntry{Cluster: cluster, App: app, Revision: m.seq, State: proto.Clone(env).(*flotillav1.SignedDesiredState)})
	return m.seq
}

func (m *memStore) LatestDesired(context.Context) ([]bus.DesiredEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	latest := map[string]bus.DesiredEntry{}
	for _, e := range m.entries {
		latest[appkey.Join(e.Cluster, e.App)] = e
	}
	return slices.Collect(maps.Values(latest)), nil
}

func (m *memStore) DesiredHistory(_ context.Context, cluster, app string) ([]bus.DesiredEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []bus.DesiredEntry
	for _, e := range m.entries {
		if e.Cluster == cluster && e.App == app {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("history of %s: %w", appkey.Join(cluster, app), bus.ErrNotFound)
	}
	return out, nil
}

func (m *memStore) EachRetainedDesired(_ context.Context, fn func(bus.DesiredEntry)) error {
	m.mu.Lock()
	entries := slices.Clone(m.entries)
	m.mu.Unlock()
	for _, e := range entries {
		fn(e)
	}
	return nil
}

func (m *memStore) PublishDesired(_ context.Context, puts []bus.DesiredPut) ([]uint64, error) {
	revisions := make([]uint64, len(puts))
	failed := false
	for i, p := range puts {
		m.mu.Lock()
		take := m.accept != 0
		if m.accept > 0 {
			m.accept--
		}
		m.mu.Unlock()
		if !take {
			failed = true
			continue
		}
		revisions[i] = m.put(p.Cluster, p.App, p.State)
	}
	if failed {
		return revisions, errors.New("nats: no responders available for request")
	}
	return revisions, nil
}

// TrimDesiredHistory keeps the newest keep entries of a key, as a stream
// purge with a subject and keep does.
func (m *memStore) TrimDesiredHistory(_ context.Context, cluster, app string, keep int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.entries {
		if e.Cluster == cluster && e.App == app {
			n++
		}
	}
	m.entries = slices.DeleteFunc(m.entries, func(e bus.DesiredEntry) bool {
		if e.Cluster == cluster && e.App == app && n > max(keep, 1) {
			n--
			return true
		}
		return false
	})
	return nil
}

func (m *memStore) ArtifactIntact(_ context.Context, digest string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.artifacts[digest]
	return ok && artifact.Digest(data) == digest, nil
}

func (m *memStore) PutArtifact(_ context.Context, digest string, data []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.artifacts[digest]; ok {
		return false, nil
	}
	m.artifacts[digest] = data
	return true, nil
}

func (m *memStore) HasArtifact(_ context.Context, digest string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.artifacts[digest]
	return ok, nil
}

func (m *memStore) ListArtifacts(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.artifacts)), nil
}

func (m *memStore) DeleteArtifact(_ context.Context, digest string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.artifacts, digest)
	return nil
}

// newest is the newest entry of (cluster, app) in the bucket.
func (m *memStore) newest(t *testing.T, cluster, app string) bus.DesiredEntry {
	t.Helper()
	history, err := m.DesiredHistory(t.Context(), cluster, app)
	if err != nil {
		t.Fatal(err)
	}
	return history[len(history)-1]
}

// restart is a hub starting again on store with keys: a new Publisher,
// loaded.
func restart(t *testing.T, store Store, keys *signing.KeySet) *Publisher {
	t.Helper()
	p := New(store, keys, slog.Default())
	if err := p.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}
