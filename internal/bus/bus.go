package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Names of the JetStream buckets, object store and stream Flotilla uses.
const (
	DesiredBucket  = "flotilla-desired"
	StatusBucket   = "flotilla-status"
	ClustersBucket = "flotilla-clusters"
	// IdentitiesBucket is the hub's own: cluster identities (labels and
	// NATS user keys). No cluster may read it.
	IdentitiesBucket = "flotilla-identities"
	// FleetBucket is the hub's own: the progress of fleet rollouts, per
	// "<kind>/<name>". No cluster may read it.
	FleetBucket   = "flotilla-fleet"
	ArtifactStore = "flotilla-artifacts"
	EventsStream  = "FLOTILLA_EVENTS"

	eventsSubjectRoot = "flotilla.events"
)

// HubEventsCluster is the cluster token of events about the hub itself
// (discovery and Git errors). It cannot collide with a cluster name, which
// is a DNS label.
const HubEventsCluster = "_hub"

// Options configure the buckets the hub provisions.
type Options struct {
	// Replicas of every bucket and stream: 1 on one machine, 3 on a NATS
	// cluster.
	Replicas int
	// DesiredHistory is how many desired states per (cluster, app) are kept
	// for rollback. JetStream allows at most 64.
	DesiredHistory uint8
	// ClusterTTL is how long a registration lives without a heartbeat.
	ClusterTTL time.Duration
	// EventsMaxAge and EventsMaxBytes bound the history and audit stream
	// (the oldest events go first); ArtifactsMaxBytes bounds the artifact
	// store (a put that would overflow it fails).
	EventsMaxAge      time.Duration
	EventsMaxBytes    int64
	ArtifactsMaxBytes int64
}

// DefaultOptions suit one hub with embedded NATS.
func DefaultOptions() Options {
	return Options{
		Replicas:       1,
		DesiredHistory: 64, // JetStream's maximum; the rollback window.
		// Agents heartbeat every 15 s; three missed beats mean gone.
		ClusterTTL:        45 * time.Second,
		EventsMaxAge:      7 * 24 * time.Hour,
		EventsMaxBytes:    1 << 30,
		ArtifactsMaxBytes: 10 << 30,
	}
}

// Bus is the hub's connection to Flotilla's JetStream resources: a Conn
// and the buckets it provisioned, bound.
type Bus struct {
	*Conn
	desired  jetstream.KeyValue
	status   jetstream.KeyValue
	clusters jetstream.KeyValue
	// identities is the hub's record of the clusters it issued
	// credentials to.
	identities jetstream.KeyValue
	// fleet holds the fleet rollouts' records.
	fleet     jetstream.KeyValue
	artifacts jetstream.ObjectStore
}

// Provision creates or updates every bucket, store and stream, then opens
// them. Only the hub calls it; agents Open what exists.
func Provision(ctx context.Context, nc *nats.Conn, opts Options) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kvs := []jetstream.KeyValueConfig{
		// The leader's lease lives here too, and expires by a per-message
		// TTL (PutLease); the marker an expiry leaves lives a second.
		{Bucket: DesiredBucket, History: opts.DesiredHistory, Replicas: opts.Replicas, LimitMarkerTTL: time.Second,
			Description: "Flotilla desired state per <cluster>.<app>, signed by the hub, and the hub leader's lease"},
		{Bucket: StatusBucket, History: 1, Replicas: opts.Replicas, Description: "Flotilla app status per <cluster>.<app>, written by agents"},
		{Bucket: ClustersBucket, History: 1, TTL: opts.ClusterTTL, Replicas: opts.Replicas, Description: "Flotilla cluster registrations; an entry expires without heartbeats"},
		{Bucket: IdentitiesBucket, History: 1, Replicas: opts.Replicas, Description: "Flotilla cluster identities, the hub's own"},
		{Bucket: FleetBucket, History: 1, Replicas: opts.Replicas, Description: "Flotilla fleet rollouts' progress, signed by the hub"},
	}
	// Each bucket, store and stream at once: a server that a reconnecting
	// fleet keeps busy answers each request only after a queue (its
	// account and stream info requests after every other), and one wait
	// for all of them fits in the caller's timeout where one each in turn
	// does not.
	var g errgroup.Group
	for _, cfg := range kvs {
		g.Go(func() error {
			if cfg.Bucket == DesiredBucket {
				return provisionDesired(ctx, js, cfg)
			}
			if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
				return fmt.Errorf("provision bucket %s: %w", cfg.Bucket, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: ArtifactStore, Replicas: opts.Replicas, MaxBytes: opts.ArtifactsMaxBytes, Description: "Flotilla artifacts by sha256 digest", Compression: false}); err != nil {
			return fmt.Errorf("provision object store %s: %w", ArtifactStore, err)
		}
		return nil
	})
	g.Go(func() error {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        EventsStream,
			Subjects:    []string{eventsSubjectRoot + ".>"},
			MaxAge:      opts.EventsMaxAge,
			MaxBytes:    opts.EventsMaxBytes,
			Discard:     jetstream.DiscardOld,
			Replicas:    opts.Replicas,
			Description: "Flotilla sync history and audit events",
		}); err != nil {
			return fmt.Errorf("provision stream %s: %w", EventsStream, err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return Bind(ctx, nc)
}

// provisionDesired creates or updates the desired-state bucket, and
// allows atomic batches on its stream: the leader publishes desired states
// in atomic batches fenced by its lease (PublishDesiredFenced). A bucket
// that is current already is left alone: updating it would turn atomic
// batches off for a moment.
func provisionDesired(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	if desiredCurrent(ctx, js, cfg) {
		return nil
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
		return fmt.Errorf("provision bucket %s: %w", cfg.Bucket, err)
	}
	if err := allowAtomicPublish(ctx, js, "KV_"+cfg.Bucket); err != nil {
		return fmt.Errorf("provision bucket %s: %w", cfg.Bucket, err)
	}
	return nil
}

// desiredCurrent reports whether the desired-state bucket's stream has
// cfg's settings and atomic batches allowed already.
func desiredCurrent(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) bool {
	stream, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return false
	}
	c := stream.CachedInfo().Config
	return c.MaxMsgsPerSubject == int64(cfg.History) && c.Replicas == cfg.Replicas && c.AllowMsgTTL &&
		c.SubjectDeleteMarkerTTL == cfg.LimitMarkerTTL && c.AllowAtomicPublish
}

// allowAtomicPublish turns atomic batch publishing on for a stream.
func allowAtomicPublish(ctx context.Context, js jetstream.JetStream, name string) error {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := stream.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// Bind binds to the buckets the hub provisioned, for a client with the
// hub's permissions. It returns ErrNotProvisioned (wrapped) when they do
// not exist yet.
func Bind(ctx context.Context, nc *nats.Conn) (*Bus, error) {
	conn, err := Open(nc)
	if err != nil {
		return nil, err
	}
	b := &Bus{Conn: conn}
	js := conn.js
	var g errgroup.Group // at once, as Provision
	for name, dst := range map[string]*jetstream.KeyValue{DesiredBucket: &b.desired, StatusBucket: &b.status, ClustersBucket: &b.clusters, IdentitiesBucket: &b.identities, FleetBucket: &b.fleet} {
		g.Go(func() error {
			kv, err := js.KeyValue(ctx, name)
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				return fmt.Errorf("%w (bucket %s)", ErrNotProvisioned, name)
			}
			if err != nil {
				return fmt.Errorf("open bucket %s: %w", name, err)
			}
			*dst = kv
			return nil
		})
	}
	g.Go(func() error {
		artifacts, err := js.ObjectStore(ctx, ArtifactStore)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("%w (object store %s)", ErrNotProvisioned, ArtifactStore)
		}
		if err != nil {
			return fmt.Errorf("open object store %s: %w", ArtifactStore, err)
		}
		b.artifacts = artifacts
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return b, nil
}

// kvSubject is the subject a KV put publishes on; a key is an
// appkey.Join(cluster, app).
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// desiredKey is the key of a message on the desired-state bucket's
// subject; ok is false for any other subject and for the leader's lease.
func desiredKey(subject string) (key string, ok bool) {
	key, ok = strings.CutPrefix(subject, kvSubject(DesiredBucket, ""))
	return key, ok && !isLeaseKey(key)
}
