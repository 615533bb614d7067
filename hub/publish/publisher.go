package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/object"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var tracer = otel.Tracer("github.com/flotilla-dev/flotilla/hub/publish")

// Publisher keeps what the hub last published and publishes changes. It
// signs with the key set's signer and verifies what it reads back from the
// bus with the whole key set (verify.go).
type Publisher struct {
	store Store
	keys  *signing.KeySet
	log   *slog.Logger

	mu sync.Mutex
	// latest is the newest published desired state per key, and
	// fingerprints its fingerprint, computed once.
	latest       map[string]*flotillav1.DesiredState
	fingerprints map[string][32]byte
	// revisions is the stream revision of the bus's newest entry per key
	// that the Publisher has seen (written, loaded or observed), verified
	// or not.
	revisions map[string]uint64
	// gitContent is the fingerprint of what Git last said per key, also
	// while the key is pinned; unpin holds the keys whose pin an operator
	// released, until the next Publish republishes them.
	gitContent map[string][32]byte
	unpin      map[string]bool
	// resign holds the keys whose newest entry in the bus the current key
	// did not sign (a previous key, or an entry that does not verify):
	// the next Publish signs their desired state again.
	resign map[string]bool
	// intact are the artifacts read back whole since the process started
	// or the last garbage collection: others are checked before they are
	// counted as stored, and a corrupt one is stored again.
	intact map[string]bool
	// packed are the artifacts of the last Publish, by filesKey: an
	// application whose files did not change is not packed again.
	packed map[string]packedArtifact
}

// New creates a Publisher on store signing with keys (LoadKeys); call Load
// before the first Publish.
func New(store Store, keys *signing.KeySet, log *slog.Logger) *Publisher {
	return &Publisher{store: store, keys: keys, log: log, latest: map[string]*flotillav1.DesiredState{}, fingerprints: map[string][32]byte{}, revisions: map[string]uint64{},
		gitContent: map[string][32]byte{}, unpin: map[string]bool{}, resign: map[string]bool{}, intact: map[string]bool{},
		packed: map[string]packedArtifact{}}
}

// Keys is the key set the Publisher signs and verifies with; the hub
// serves its PEM to agents.
func (p *Publisher) Keys() *signing.KeySet { return p.keys }

// Load reads the newest published desired state of every key, so history
// ids continue and unchanged applications are not republished after a
// restart. Only entries that verify count: where a key's newest entry does
// not, Load continues from the newest one of its history that does, and
// the next Publish signs that again. So does it where the newest entry is
// signed by a key other than the signer's (a rotation). A bus holding
// entries of which none verifies is an error: the hub lacks the key that
// signed them.
func (p *Publisher) Load(ctx context.Context) error {
	entries, err := p.store.LatestDesired(ctx)
	if err != nil {
		return fmt.Errorf("load published desired state: %w", err)
	}
	latest, resign, revisions := map[string]*flotillav1.DesiredState{}, map[string]bool{}, map[string]uint64{}
	var refused []bus.DesiredEntry
	for _, e := range entries {
		key := appkey.Join(e.Cluster, e.App)
		revisions[key] = e.Revision
		ds, err := p.verify(e)
		switch {
		case err != nil:
			if ds, err = p.newestVerified(ctx, e.Cluster, e.App); err != nil {
				return err
			}
			if ds == nil {
				refused = append(refused, e)
				continue
			}
			resign[key] = true
		case e.State.GetSignature().GetKeyId() != p.keys.Signer.KeyID():
			resign[key] = true
		}
		latest[key] = ds
	}
	if len(latest) == 0 && len(refused) > 0 {
		return fmt.Errorf("%w: the bus holds %d desired states signed by %s, and none verifies with the hub's keys (%s): "+
			"restore the signing key, or add the public key that signed them to %s (see \"Rotating the signing key\" in docs/operations.md)",
			ErrUntrustedBus, len(refused), signedBy(refused), strings.Join(p.keys.KeyIDs(), ", "), signing.TrustedKeysFile)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	maps.Copy(p.resign, resign)
	maps.Copy(p.revisions, revisions)
	for key, ds := range latest {
		p.adopt(key, ds)
	}
	return nil
}

// adopt makes ds, read back from the bus and verified, the key's latest,
// unless the Publisher knows a later one: then ds is an older entry put
// back on top (a replay), which the next Publish supersedes by signing the
// latest again with a new history id. p.mu is held.
func (p *Publisher) adopt(key string, ds *flotillav1.DesiredState) {
	if cur := p.latest[key]; cur != nil && ds.GetHistoryId() <= cur.GetHistoryId() {
		if ds.GetHistoryId() < cur.GetHistoryId() {
			p.resign[key] = true
		}
		return
	}
	p.remember(key, ds)
}

// Observe takes an entry of the bus seen by a watch of the desired-state
// bucket: one the Publisher wrote itself, or another hub replica's. Newer
// in the stream than what it knows of the key, the entry becomes the key's
// latest if it verifies and carries a later history id; one that does not
// verify, that a previous key signed, or that is an older entry put back
// (a replay) is superseded by the next Publish, which signs the latest
// again. So a follower's view stays the bus's, and a replica that becomes
// leader continues every key's history from its highest id.
func (p *Publisher) Observe(e bus.DesiredEntry) {
	key := appkey.Join(e.Cluster, e.App)
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Revision <= p.revisions[key] {
		return
	}
	p.revisions[key] = e.Revision
	ds, err := p.verify(e)
	if err != nil {
		p.resign[key] = true
		return
	}
	current := e.State.GetSignature().GetKeyId() == p.keys.Signer.KeyID() &&
		(p.latest[key] == nil || ds.GetHistoryId() >= p.latest[key].GetHistoryId())
	p.adopt(key, ds)
	if current {
		delete(p.resign, key)
	} else {
		p.resign[key] = true
	}
}

// Latest returns the newest published desired state of (cluster, app).
func (p *Publisher) Latest(cluster, app string) *flotillav1.DesiredState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest[appkey.Join(cluster, app)]
}

// All returns the newest published desired state of every key.
func (p *Publisher) All() []*flotillav1.DesiredState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*flotillav1.DesiredState, 0, len(p.latest))
	for _, ds := range p.latest {
		out = append(out, ds)
	}
	return out
}

// Report says what one Publish did.
type Report struct {
	// Published are the keys that got a new desired state (or deletion),
	// including those in Resigned.
	Published []string
	// Resigned are the keys whose desired state was published again,
	// unchanged but for its history id and time, because the bus's newest
	// entry was not signed by the current key (a rotation, or an entry
	// that does not verify).
	Resigned []string
	// Deleted are the keys published as deletions.
	Deleted []string
	// Unchanged counts keys whose desired state was already current.
	Unchanged int
	// Pinned counts keys held at a rollback while Git is unchanged.
	Pinned int
	// Held counts keys whose change the releaser holds back (a fleet
	// rollout's later waves).
	Held int
	// Released are the keys whose pin Git or an operator released.
	Released []string
	// ArtifactsStored counts artifacts written (not already present, or
	// stored again because what was stored was corrupt or gone).
	ArtifactsStored int
	// Pending counts the desired states a failed Publish could not write:
	// the next Publish writes them (or newer ones).
	Pending int
}

// Publish brings the desired-state bucket in line with a discovery. Keys of
// applications that failed keep their last good state; while any root
// fails, nothing is deleted. A change is published when release lets it
// go (nil releases every change at once). The entries of held clusters
// (revoked ones, and ones whose agent has not registered since the hub
// started) are left as they are: no deletion, no new signature. A cluster
// cut off or away keeps what it runs; it is not told to delete it.
func (p *Publisher) Publish(ctx context.Context, res *discovery.Result, held map[string]bool, release Releaser) (*Report, error) {
	ctx, span := tracer.Start(ctx, "hub.publish")
	defer span.End()
	p.mu.Lock()
	defer p.mu.Unlock()

	report := &Report{}
	var puts []bus.DesiredPut
	// changes are the keys whose desired state differs from Git's, and
	// changed their new desired state, not yet signed.
	var changes []Change
	changed := map[string]pendingPut{}
	// deleting and resigning are the keys of deletions and of states
	// signed again among puts: the report counts them once written.
	deleting, resigning := map[string]bool{}, map[string]bool{}
	next := map[string]*flotillav1.DesiredState{}
	desired := map[string]bool{}
	// historyLimits are the revisionHistoryLimits of the keys that set one.
	historyLimits := map[string]int{}
	// packedNow are the artifacts this discovery's applications use.
	packedNow := map[string]bool{}
	defer func() {
		for key := range p.packed {
			if !packedNow[key] {
				delete(p.packed, key)
			}
		}
	}()
	for _, app := range res.Apps {
		if len(app.Clusters) == 0 {
			continue
		}
		appCtx, appSpan := tracer.Start(ctx, "hub.publish.app", trace.WithAttributes(
			attribute.String("flotilla.app", app.Application.Metadata.Name),
			attribute.String("vcs.revision", app.Commit.Hash.String()),
		))
		files := artifactFiles(app)
		packKey := filesKey(files)
		packedNow[packKey] = true
		prevPack, known := p.packed[packKey]
		digest, size, inline := prevPack.digest, prevPack.size, prevPack.inline
		if known && p.intact[digest] {
			// Still there? (Only garbage collection deletes an artifact a
			// desired state references, and it resets intact; this checks
			// that nothing else did.)
			there, err := p.store.HasArtifact(appCtx, digest)
			if err != nil {
				appSpan.End()
				return nil, err
			}
			known = there
		}
		if !known || !p.intact[digest] {
			// Packed once per set of content-addressed files, and again
			// only when the artifact must be stored (first seen by this
			// process, or read back corrupt or gone).
			data, d, err := artifact.PackFiles(files)
			if err != nil {
				appSpan.End()
				return nil, fmt.Errorf("app %s: pack artifact: %w", app.Application.Metadata.Name, err)
			}
			digest, size, inline = d, int64(len(data)), nil
			if len(data) <= artifact.MaxInline {
				inline = data
			}
			p.packed[packKey] = packedArtifact{digest: digest, size: size, inline: inline}
			stored, err := p.storeArtifact(appCtx, digest, data)
			if err != nil {
				appSpan.End()
				return nil, err
			}
			if stored {
				report.ArtifactsStored++
			}
		}
		appTrace := appSpan.SpanContext()
		appSpan.End()
		// The desired state is the same for every cluster but for its name:
		// build and hash it once, and per cluster only when it changed.
		tmpl, err := desiredState(app, "", &flotillav1.Artifact{Digest: digest, Size: size, Inline: inline})
		if err != nil {
			return nil, err
		}
		content := contentHash(tmpl)
		for _, cluster := range app.Clusters {
			key := appkey.Join(cluster, app.Application.Metadata.Name)
			desired[key] = true
			if limit := app.Application.Spec.RevisionHistoryLimit; limit != nil {
				historyLimits[key] = int(*limit)
			}
			prev := p.latest[key]
			gitContent := clusterFingerprint(content, cluster)
			p.gitContent[key] = gitContent
			if pin := prev.GetPin(); pin != nil {
				if !p.unpin[key] && pin.GetGitContent() == hex.EncodeToString(gitContent[:]) {
					report.Pinned++
					continue
				}
				report.Released = append(report.Released, key)
				delete(p.unpin, key)
			} else if prev != nil && prev.GetDeletion() == nil && p.fingerprints[key] == gitContent {
				report.Unchanged++
				continue
			}
			ds := proto.Clone(tmpl).(*flotillav1.DesiredState)
			ds.Cluster = cluster
			changes = append(changes, Change{Key: key, Content: hex.EncodeToString(gitContent[:]), Previous: prev.GetHistoryId(), App: app})
			changed[key] = pendingPut{state: ds, trace: appTrace}
		}
	}
	// A change is published when the releaser (fleet waves) lets it go
	// now; the others stay held at their last state until it does.
	var released map[string]*flotillav1.FleetWave
	if release != nil {
		released = release.Release(ctx, changes)
	} else {
		released = releaseAll(changes)
	}
	for _, c := range changes {
		wave, ok := released[c.Key]
		if !ok {
			report.Held++
			continue
		}
		pending := changed[c.Key]
		ds := pending.state
		ds.Wave = wave
		var err error
		if ds.HistoryId, err = nextHistoryID(c.Key, p.latest[c.Key]); err != nil {
			return nil, err
		}
		ds.PublishedAt = timestamppb.Now()
		signed, err := p.keys.Signer.Sign(ds)
		if err != nil {
			return nil, err
		}
		puts = append(puts, bus.DesiredPut{Cluster: ds.GetCluster(), App: ds.GetApp(), State: signed, Trace: pending.trace})
		next[c.Key] = ds
	}

	failed := map[string]bool{}
	for _, e := range res.Errors {
		failed[e.App] = true
	}
	if len(res.RootErrors) == 0 {
		for _, key := range slices.Sorted(maps.Keys(p.latest)) {
			prev := p.latest[key]
			if desired[key] || prev.GetDeletion() != nil || failed[prev.GetApp()] || held[prev.GetCluster()] {
				continue
			}
			ds := proto.Clone(prev).(*flotillav1.DesiredState)
			ds.Deletion = &flotillav1.Deletion{Cascade: prev.GetCascadeOnDelete()}
			var err error
			if ds.HistoryId, err = nextHistoryID(key, prev); err != nil {
				return nil, err
			}
			ds.PublishedAt = timestamppb.Now()
			ds.Initiator = flotillav1.Initiator_INITIATOR_GIT
			signed, err := p.keys.Signer.Sign(ds)
			if err != nil {
				return nil, err
			}
			puts = append(puts, bus.DesiredPut{Cluster: ds.GetCluster(), App: ds.GetApp(), State: signed}) // in ctx's trace
			next[key] = ds
			deleting[key] = true
		}
	}

	// What the current key did not sign is signed again, pinned, failing
	// or deleted alike, so agents can stop trusting a previous key and a
	// forged newest entry is superseded.
	for _, key := range slices.Sorted(maps.Keys(p.resign)) {
		prev := p.latest[key]
		if next[key] != nil || held[prev.GetCluster()] {
			continue
		}
		ds := proto.Clone(prev).(*flotillav1.DesiredState)
		var err error
		if ds.HistoryId, err = nextHistoryID(key, prev); err != nil {
			return nil, err
		}
		ds.PublishedAt = timestamppb.Now()
		signed, err := p.keys.Signer.Sign(ds)
		if err != nil {
			return nil, err
		}
		puts = append(puts, bus.DesiredPut{Cluster: ds.GetCluster(), App: ds.GetApp(), State: signed})
		next[key] = ds
		resigning[key] = true
	}

	revisions, err := p.store.PublishDesired(ctx, puts)
	// What was acknowledged is published, also when the rest failed: its
	// history ids are spent, and the next Publish goes on from them.
	for i, put := range puts {
		key := appkey.Join(put.Cluster, put.App)
		if revisions[i] == 0 {
			report.Pending++
			continue
		}
		p.revisions[key] = max(p.revisions[key], revisions[i])
		p.remember(key, next[key])
		delete(p.resign, key)
		report.Published = append(report.Published, key)
		if deleting[key] {
			report.Deleted = append(report.Deleted, key)
		}
		if resigning[key] {
			report.Resigned = append(report.Resigned, key)
		}
	}
	if err != nil {
		slices.Sort(report.Published)
		return report, fmt.Errorf("%d of %d desired states not published: %w", report.Pending, len(puts), err)
	}

	slices.Sort(report.Published)
	for _, key := range report.Published {
		if limit, ok := historyLimits[key]; ok {
			cluster, app, _ := appkey.Split(key)
			if err := p.store.TrimDesiredHistory(ctx, cluster, app, limit); err != nil {
				p.log.Warn("revisionHistoryLimit: trim the history", "key", key, "error", err)
			}
		}
	}
	span.SetAttributes(attribute.Int("flotilla.published", len(report.Published)), attribute.Int("flotilla.unchanged", report.Unchanged))
	return report, nil
}

// storeArtifact stores an artifact unless it is there and intact: the
// first time a process meets a digest it reads the stored one back, and a
// corrupt or missing one is stored again from what Git rendered. p.mu is
// held.
func (p *Publisher) storeArtifact(ctx context.Context, digest string, data []byte) (bool, error) {
	if !p.intact[digest] {
		ok, err := p.store.ArtifactIntact(ctx, digest)
		if err != nil {
			return false, err
		}
		if !ok {
			if err := p.store.DeleteArtifact(ctx, digest); err != nil {
				return false, err
			}
		}
	}
	stored, err := p.store.PutArtifact(ctx, digest, data)
	if err != nil {
		return false, err
	}
	if stored {
		p.log.Info("artifact stored", "digest", digest, "size", len(data))
	}
	p.intact[digest] = true
	return stored, nil
}

// remember makes ds key's latest. It keeps no inline archive: the digest
// names it and the artifact store holds it, and the hub's view (and what
// its API returns) need not carry a copy per cluster.
func (p *Publisher) remember(key string, ds *flotillav1.DesiredState) {
	if len(ds.GetArtifact().GetInline()) > 0 {
		a := proto.CloneOf(ds.GetArtifact())
		a.Inline = nil
		ds.Artifact = a
	}
	p.latest[key] = ds
	p.fingerprints[key] = fingerprint(ds)
}

// desiredState builds the desired state of app in cluster.
func desiredState(app *discovery.App, cluster string, archive *flotillav1.Artifact) (*flotillav1.DesiredState, error) {
	a := app.Application
	ds := &flotillav1.DesiredState{
		SchemaVersion: signing.SchemaVersion,
		Cluster:       cluster,
		App:           a.Metadata.Name,
		Project:       a.Spec.Project,
		Artifact:      archive,
		Destination: &flotillav1.Destination{
			Namespace: a.Spec.Destination.Namespace,
			Name:      a.Spec.Destination.Name,
			Server:    a.Spec.Destination.Server,
		},
		SyncPolicy:        a.SyncPolicy(),
		IgnoreDifferences: a.IgnoreDifferences(),
		Initiator:         flotillav1.Initiator_INITIATOR_GIT,
		CascadeOnDelete:   a.Cascade(),
		Warnings:          slices.Clone(a.Warnings),
	}
	if app.Project != nil {
		ds.ProjectPolicy = app.Project.Policy()
	}
	if !multiSource(app) {
		src := app.Sources[0]
		spec, err := src.Spec.RenderSpec()
		if err != nil {
			return nil, fmt.Errorf("application %s: spec.source.%w", a.Metadata.Name, err)
		}
		ds.Source, ds.Render, ds.Artifact.Root = source(src, app.Commit), spec, src.Path
		return ds, nil
	}
	for i, src := range app.Sources {
		sr := &flotillav1.SourceRender{Source: source(src, app.Commit), Dir: strconv.Itoa(i), Path: src.Path, Ref: src.Spec.Ref, ValuesOnly: src.Spec.ValuesOnly()}
		if !sr.ValuesOnly {
			spec, err := src.Spec.RenderSpec()
			if err != nil {
				return nil, fmt.Errorf("application %s: spec.sources[%d].%w", a.Metadata.Name, i, err)
			}
			sr.Render = spec
		}
		ds.Sources = append(ds.Sources, sr)
		// The application's revision is its first Git source's commit
		// (app.Commit): its source is that one, or the first.
		if ds.Source == nil && src.Commit != nil {
			ds.Source = sr.Source
		}
	}
	if ds.Source == nil {
		ds.Source = ds.Sources[0].Source
	}
	return ds, nil
}

// multiSource reports whether the application uses spec.sources: its
// artifact holds each source under its index.
func multiSource(app *discovery.App) bool { return len(app.Application.Spec.Sources) > 0 }

// source describes where a source's desired state came from. A chart's
// commit is that of the application's manifest (commit).
func source(src *discovery.Source, commit *object.Commit) *flotillav1.Source {
	out := &flotillav1.Source{RepoUrl: src.Spec.RepoURL, Path: src.Spec.Path, TargetRevision: src.Spec.TargetRevision}
	if ch := src.Chart; ch != nil {
		out.Chart, out.ChartVersion, out.ChartDigest = ch.Name, ch.Version, ch.Digest
	} else {
		commit = src.Commit
	}
	out.Commit, out.CommitMessage, out.CommitAuthor = commit.Hash.String(), commit.Message, commit.Author.String()
	out.CommitTime = timestamppb.New(commit.Committer.When)
	return out
}

// artifactFiles are the files of an application's artifact: a single
// source's as they lie in its directory; each of a multi-source
// application's under its index, with the files others' value files read
// from it.
func artifactFiles(app *discovery.App) []artifact.File {
	var files []artifact.File
	for i, src := range app.Sources {
		prefix := ""
		if multiSource(app) {
			prefix = strconv.Itoa(i) + "/"
		}
		names := slices.Clone(src.RefFiles)
		if src.Rendered != nil {
			names = append(names, src.Rendered.Files...)
		}
		for _, name := range names {
			files = append(files, artifact.File{Name: prefix + name, Path: filepath.Join(src.Dir, filepath.FromSlash(name))})
		}
	}
	return files
}

// filesKey identifies an artifact by its files: their directories are
// content-addressed (a checkout by commit, a chart by digest), so the
// same files make the same bytes.
func filesKey(files []artifact.File) string {
	var b strings.Builder
	for _, f := range files {
		b.WriteString(f.Name)
		b.WriteByte(0)
		b.WriteString(f.Path)
		b.WriteByte(0)
	}
	return b.String()
}

// pendingPut is a change's desired state before it is released.
type pendingPut struct {
	state *flotillav1.DesiredState
	trace trace.SpanContext
}

// packedArtifact is an artifact packed before: its digest and size.
type packedArtifact struct {
	digest string
	size   int64
	// inline is the archive when it is small enough to travel in the
	// desired state (artifact.MaxInline).
	inline []byte
}

// fingerprint covers what changes an agent's work: not the commit,
// history id, time, initiator or fleet wave, so a commit that leaves an application
// untouched does not republish it.
func fingerprint(ds *flotillav1.DesiredState) [32]byte {
	return clusterFingerprint(contentHash(ds), ds.GetCluster())
}

// contentHash hashes a desired state without its cluster and volatile
// fields.
func contentHash(ds *flotillav1.DesiredState) [32]byte {
	c := proto.Clone(ds).(*flotillav1.DesiredState)
	c.Cluster, c.HistoryId, c.PublishedAt, c.Initiator, c.Pin, c.Wave = "", 0, nil, flotillav1.Initiator_INITIATOR_UNSPECIFIED, nil, nil
	if c.Artifact != nil {
		c.Artifact.Inline = nil // the digest names the bytes
	}
	clearCommit := func(s *flotillav1.Source) {
		if s != nil {
			s.Commit, s.CommitMessage, s.CommitAuthor, s.CommitTime = "", "", "", nil
		}
	}
	clearCommit(c.Source)
	for _, s := range c.Sources {
		clearCommit(s.GetSource())
	}
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	return sha256.Sum256(data)
}

func clusterFingerprint(content [32]byte, cluster string) [32]byte {
	return sha256.Sum256(append(content[:], cluster...))
}

// CollectGarbage deletes artifacts that no retained desired state (current
// or in history) references. It returns how many it deleted. Entries that
// do not verify reference nothing: an artifact only they name is deleted.
// The same scan finds keys whose newest entry is an older one put back
// (their history continues from the highest id retained).
//
// It holds the publisher's lock throughout, so no Publish stores an
// artifact between the scan of what is referenced and the deletions; and
// it has every artifact read back again before it is next counted as
// stored.
func (p *Publisher) CollectGarbage(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.intact)
	referenced := map[string]bool{}
	err := p.store.EachRetainedDesired(ctx, func(e bus.DesiredEntry) {
		ds, err := p.verify(e)
		if err != nil {
			return
		}
		referenced[ds.GetArtifact().GetDigest()] = true
		// A retained entry later than the key's latest means an older one
		// was put back on top (a replay Load could not tell from the
		// newest entry alone): the history goes on from it, and the next
		// Publish signs it again.
		key := appkey.Join(e.Cluster, e.App)
		if cur := p.latest[key]; cur != nil && ds.GetHistoryId() > cur.GetHistoryId() {
			p.remember(key, ds)
			p.resign[key] = true
		}
	})
	if err != nil {
		return 0, fmt.Errorf("artifact garbage collection: %w", err)
	}
	stored, err := p.store.ListArtifacts(ctx)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, digest := range stored {
		if referenced[digest] {
			continue
		}
		if err := p.store.DeleteArtifact(ctx, digest); err != nil {
			return deleted, err
		}
		deleted++
	}
	return deleted, nil
}

// ErrUntrustedBus is a desired-state bucket none of whose entries the
// hub's keys verify (Load): its keys are not the ones that signed them.
var ErrUntrustedBus = errors.New("no desired state verifies")

// Errors of Rollback and Unpin.
var (
	// ErrNoEntry is a history id the key does not retain.
	ErrNoEntry = errors.New("no such history entry")
	// ErrNotRollbackable is an entry that cannot be republished: a
	// deletion, one whose artifact was garbage-collected, or one that
	// does not verify (an *UnverifiedError).
	ErrNotRollbackable = errors.New("history entry cannot be rolled back to")
	// ErrNotReconciled is a key Git's desired state is not known for yet.
	ErrNotReconciled = errors.New("the hub has not reconciled this application since it started")
)

// Entry returns history entry id of (cluster, app) if it can be rolled
// back to: retained, verified, not a deletion, its artifact still stored.
// An entry claiming id that does not verify is ErrNotRollbackable (and an
// *UnverifiedError) unless a verified entry has that id.
func (p *Publisher) Entry(ctx context.Context, cluster, app string, id uint64) (*flotillav1.DesiredState, error) {
	key := appkey.Join(cluster, app)
	history, err := p.History(ctx, cluster, app)
	if err != nil {
		return nil, err
	}
	var target *flotillav1.DesiredState
	var unverified *UnverifiedError
	for _, r := range history {
		switch {
		case r.State != nil && r.State.GetHistoryId() == id:
			target = r.State
		case r.Err != nil && r.Err.HistoryID == id:
			unverified = r.Err
		}
	}
	switch {
	case target == nil && unverified != nil:
		return nil, fmt.Errorf("%w: %w", unverified, ErrNotRollbackable)
	case target == nil:
		return nil, fmt.Errorf("%s: history id %d: %w (see flotilla app history)", key, id, ErrNoEntry)
	case target.GetDeletion() != nil:
		return nil, fmt.Errorf("%s: history id %d removed the application: %w", key, id, ErrNotRollbackable)
	}
	if ok, err := p.store.HasArtifact(ctx, target.GetArtifact().GetDigest()); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%s: history id %d: its artifact %s was garbage-collected: %w", key, id, target.GetArtifact().GetDigest(), ErrNotRollbackable)
	}
	return target, nil
}

// Rollback republishes target, which must come from Entry (it verified
// it), as the newest entry of its key, pinned by actor for reason (empty
// for an operator's rollback). The pin holds while Git's desired state for
// the key stays what it is now.
func (p *Publisher) Rollback(ctx context.Context, target *flotillav1.DesiredState, actor, reason string) (*flotillav1.DesiredState, error) {
	key := appkey.Join(target.GetCluster(), target.GetApp())
	p.mu.Lock()
	defer p.mu.Unlock()
	gitContent, ok := p.gitContent[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, ErrNotReconciled)
	}
	ds := proto.Clone(target).(*flotillav1.DesiredState)
	var err error
	if ds.HistoryId, err = nextHistoryID(key, p.latest[key]); err != nil {
		return nil, err
	}
	ds.PublishedAt = timestamppb.Now()
	ds.Initiator = flotillav1.Initiator_INITIATOR_ROLLBACK
	ds.Pin = &flotillav1.Pin{By: actor, At: ds.PublishedAt, RolledBackTo: target.GetHistoryId(), GitContent: hex.EncodeToString(gitContent[:]), Reason: reason}
	ds.Wave = nil // its analysis ran when it was first published
	signed, err := p.keys.Signer.Sign(ds)
	if err != nil {
		return nil, err
	}
	revisions, err := p.store.PublishDesired(ctx, []bus.DesiredPut{{Cluster: ds.GetCluster(), App: ds.GetApp(), State: signed}})
	if revisions[0] != 0 { // its history id is spent, whatever the error says
		p.revisions[key] = max(p.revisions[key], revisions[0])
		p.remember(key, ds)
		delete(p.resign, key)
	}
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// Resigning reports whether the next Publish has entries to sign again.
func (p *Publisher) Resigning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.resign) > 0
}

// Unpin marks the pinned keys among keys for release by the next Publish
// and returns them.
func (p *Publisher) Unpin(keys []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pinned []string
	for _, key := range keys {
		if p.latest[key].GetPin() != nil {
			p.unpin[key] = true
			pinned = append(pinned, key)
		}
	}
	return pinned
}
