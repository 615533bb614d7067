package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/hub/gitrepo"
	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// commandTimeout bounds how long the hub waits for an agent's reply. A
// sync replies once its objects are applied, before they are healthy.
const commandTimeout = 60 * time.Second

// Statuses implements api.Hub: from the hub's mirror of the status
// bucket, or the bucket itself until the mirror has loaded.
func (h *Hub) Statuses(ctx context.Context) (map[string]*flotillav1.AppStatus, error) {
	select {
	case <-h.statusesLoaded:
	default:
		return h.bus.Statuses(ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.statuses), nil
}

// Events implements api.Hub.
func (h *Hub) Events(ctx context.Context, cluster, app string, limit int) ([]*flotillav1.Event, error) {
	return h.bus.Events(ctx, cluster, app, limit)
}

// FollowEvents implements api.Hub.
func (h *Hub) FollowEvents(ctx context.Context, fn func(*flotillav1.Event)) error {
	return h.bus.FollowEvents(ctx, fn)
}

// Audit implements api.Hub: the event goes to the stream and the log.
func (h *Hub) Audit(ctx context.Context, ev *flotillav1.Event) {
	h.log.Info("audit", "actor", ev.GetActor(), "message", ev.GetMessage())
	h.event(ctx, ev)
}

// targets are the newest published desired states of app, in one cluster
// or all, without deletions; none is an api.ErrNotFound.
func (h *Hub) targets(app, cluster string) ([]*flotillav1.DesiredState, error) {
	return api.Targets(h.publisher.All(), app, cluster)
}

// History implements api.Hub.
func (h *Hub) History(ctx context.Context, app, cluster string) ([]*flotillav1.HistoryEntry, error) {
	clusters := map[string]bool{}
	for _, ds := range h.publisher.All() { // deleted apps keep their history
		if ds.GetApp() == app && (cluster == "" || ds.GetCluster() == cluster) {
			clusters[ds.GetCluster()] = true
		}
	}
	if len(clusters) == 0 {
		_, err := h.targets(app, cluster)
		return nil, err
	}
	statuses, err := h.Statuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
	}
	var out []*flotillav1.HistoryEntry
	artifacts := map[string]bool{}
	for _, c := range slices.Sorted(maps.Keys(clusters)) {
		// Only entries that verify against the hub's keys: a forged entry
		// is not history (publish.History reports it).
		retained, err := h.publisher.History(ctx, c, app)
		if errors.Is(err, bus.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
		}
		results, err := h.results(ctx, c, app, statuses[appkey.Join(c, app)])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
		}
		var entries []*flotillav1.DesiredState
		for _, r := range retained {
			if r.State != nil {
				entries = append(entries, r.State)
			}
		}
		laterApplied := false // an entry newer than this one has an outcome
		for i := len(entries) - 1; i >= 0; i-- {
			ds := entries[i]
			digest := ds.GetArtifact().GetDigest()
			if _, seen := artifacts[digest]; !seen {
				if artifacts[digest], err = h.bus.HasArtifact(ctx, digest); err != nil {
					return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
				}
			}
			result := results[ds.GetHistoryId()]
			if result == "" && laterApplied {
				result = "Superseded" // the agent went on to a newer entry without syncing this one
			}
			laterApplied = laterApplied || result != ""
			out = append(out, &flotillav1.HistoryEntry{
				Cluster: c, App: app, HistoryId: ds.GetHistoryId(), Source: ds.GetSource(), ArtifactDigest: digest,
				PublishedAt: ds.GetPublishedAt(), Initiator: ds.GetInitiator(), Pin: ds.GetPin(), Deleted: ds.GetDeletion() != nil,
				Current: i == len(entries)-1, Result: result, ArtifactAvailable: artifacts[digest] && ds.GetDeletion() == nil,
			})
		}
	}
	return out, nil
}

// results maps the history ids of (cluster, app) to the agent's outcome:
// its current status for the newest, its sync events for the rest.
func (h *Hub) results(ctx context.Context, cluster, app string, st *flotillav1.AppStatus) (map[uint64]string, error) {
	events, err := h.bus.Events(ctx, cluster, app, 1000)
	if err != nil {
		return nil, err
	}
	out := map[uint64]string{}
	for _, ev := range events {
		switch ev.GetReason() {
		case flotillav1.ReasonSyncSucceeded:
			out[ev.GetHistoryId()] = "Succeeded"
		case flotillav1.ReasonSyncFailed:
			out[ev.GetHistoryId()] = "Failed: " + ev.GetMessage()
		}
	}
	if st != nil {
		switch st.GetPhase() {
		case flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED:
			out[st.GetHistoryId()] = "Succeeded"
		case flotillav1.SyncPhase_SYNC_PHASE_FAILED, flotillav1.SyncPhase_SYNC_PHASE_ERROR:
			out[st.GetHistoryId()] = "Failed: " + st.GetMessage()
		}
	}
	return out, nil
}

// fanOut sends a signed command (filled in by fill) to the agent of each
// target, all at once, and returns result of each target and its agent's
// reply, in the order of targets. A cluster whose agent did not answer gets
// an error reply rather than failing the call.
func fanOut[T any](ctx context.Context, h *Hub, targets []*flotillav1.DesiredState, actor string, fill func(*flotillav1.AgentCommand), result func(*flotillav1.DesiredState, *flotillav1.AgentReply) T) []T {
	out := make([]T, len(targets))
	var g errgroup.Group
	for i, ds := range targets {
		g.Go(func() error {
			out[i] = result(ds, h.command(ctx, ds, actor, fill))
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// command sends one signed command to the agent of target's cluster and
// waits for its reply; a failure is an error reply.
func (h *Hub) command(ctx context.Context, target *flotillav1.DesiredState, actor string, fill func(*flotillav1.AgentCommand)) *flotillav1.AgentReply {
	cmd := &flotillav1.AgentCommand{SchemaVersion: 1, Cluster: target.GetCluster(), App: target.GetApp(), Actor: actor, IssuedAt: timestamppb.Now(),
		Nonce: newNonce()}
	fill(cmd)
	signed, err := h.signer.SignCommand(cmd)
	if err != nil {
		return &flotillav1.AgentReply{Error: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	reply, err := h.bus.Command(ctx, target.GetCluster(), signed)
	if err != nil {
		return &flotillav1.AgentReply{Error: err.Error()}
	}
	return reply
}

// commandNonceSize is how many random bytes a command's nonce has: enough
// that two commands never draw the same one.
const commandNonceSize = 16

// newNonce draws a command's nonce; the agent carries out each nonce once.
func newNonce() []byte {
	nonce := make([]byte, commandNonceSize)
	_, _ = rand.Read(nonce) // never fails: crypto/rand crashes the program rather than return an error
	return nonce
}

// Diff implements api.Hub.
func (h *Hub) Diff(ctx context.Context, app, cluster, actor string) ([]*flotillav1.ClusterDiff, error) {
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	return fanOut(ctx, h, targets, actor, func(c *flotillav1.AgentCommand) {
		c.Command = &flotillav1.AgentCommand_Diff{Diff: &flotillav1.DiffCommand{}}
	}, func(ds *flotillav1.DesiredState, r *flotillav1.AgentReply) *flotillav1.ClusterDiff {
		return &flotillav1.ClusterDiff{Cluster: ds.GetCluster(), HistoryId: r.GetHistoryId(), Diffs: r.GetDiffs(), Error: r.GetError()}
	}), nil
}

// Sync implements api.Hub: fetch Git now, publish what changed, then have
// each cluster's agent re-apply the application.
func (h *Hub) Sync(ctx context.Context, app, cluster, actor string) ([]*flotillav1.ClusterResult, error) {
	if _, err := h.targets(app, cluster); err != nil {
		return nil, err
	}
	for _, r := range h.repos {
		h.poll(ctx, r)
	}
	if err := h.reconcileAndWait(ctx); err != nil {
		return nil, fmt.Errorf("%w: publish: %w", api.ErrUnavailable, err)
	}
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	return fanOut(ctx, h, targets, actor, func(c *flotillav1.AgentCommand) {
		c.Command = &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}
	}, func(ds *flotillav1.DesiredState, r *flotillav1.AgentReply) *flotillav1.ClusterResult {
		return &flotillav1.ClusterResult{Cluster: ds.GetCluster(), HistoryId: r.GetHistoryId(), Error: r.GetError()}
	}), nil
}

// Rollback implements api.Hub. Every target cluster must have the entry
// before anything is published, so a rollback is never partial by
// surprise.
func (h *Hub) Rollback(ctx context.Context, app string, historyID uint64, cluster, actor string) ([]*flotillav1.ClusterResult, error) {
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	entries := make([]*flotillav1.DesiredState, len(targets))
	var missing []string
	for i, ds := range targets {
		entries[i], err = h.publisher.Entry(ctx, ds.GetCluster(), app, historyID)
		switch {
		case errors.Is(err, publish.ErrNoEntry):
			missing = append(missing, ds.GetCluster())
		case errors.Is(err, publish.ErrNotRollbackable):
			return nil, fmt.Errorf("%w: %w", api.ErrFailedPrecondition, err)
		case err != nil:
			return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: history id %d of %s is not retained in cluster(s) %s: history ids are per cluster, name one with --cluster",
			api.ErrNotFound, historyID, app, strings.Join(missing, ", "))
	}
	var out []*flotillav1.ClusterResult
	for _, entry := range entries {
		ds, err := h.publisher.Rollback(ctx, entry, actor, "")
		if err != nil {
			out = append(out, &flotillav1.ClusterResult{Cluster: entry.GetCluster(), Error: err.Error()})
			continue
		}
		h.log.Info("rolled back", "cluster", ds.GetCluster(), "app", app, "to", historyID, "history_id", ds.GetHistoryId(), "actor", actor)
		h.event(ctx, &flotillav1.Event{Actor: actor, Cluster: ds.GetCluster(), App: app, Type: flotillav1.EventType_EVENT_TYPE_NORMAL, Reason: flotillav1.ReasonRolledBack,
			Message:  fmt.Sprintf("%s rolled back to history %d (commit %s); pinned until Git changes the application or it is unpinned", actor, historyID, ds.GetSource().GetCommit()),
			Revision: ds.GetSource().GetCommit(), HistoryId: ds.GetHistoryId()})
		out = append(out, &flotillav1.ClusterResult{Cluster: ds.GetCluster(), HistoryId: ds.GetHistoryId()})
	}
	return out, nil
}

// Unpin implements api.Hub: the pins are released and a reconcile
// republishes what Git says.
func (h *Hub) Unpin(ctx context.Context, app, cluster, actor string) ([]*flotillav1.ClusterResult, error) {
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(targets))
	for i, ds := range targets {
		keys[i] = appkey.Join(ds.GetCluster(), app)
	}
	pinned := h.publisher.Unpin(keys)
	if len(pinned) == 0 {
		return nil, fmt.Errorf("%w: %s is not pinned", api.ErrFailedPrecondition, app)
	}
	if err := h.reconcileAndWait(ctx); err != nil {
		return nil, fmt.Errorf("%w: publish: %w", api.ErrUnavailable, err)
	}
	var out []*flotillav1.ClusterResult
	for _, key := range pinned {
		c, _, _ := appkey.Split(key)
		ds := h.publisher.Latest(c, app)
		r := &flotillav1.ClusterResult{Cluster: c, HistoryId: ds.GetHistoryId()}
		if ds.GetPin() != nil {
			r.Error = "still pinned: the application failed to render from Git; see flotilla events"
		}
		out = append(out, r)
	}
	return out, nil
}

// Revert implements api.Hub: push a revert of the last commit that changed
// the application's files, then poll so the fleet follows at once.
func (h *Hub) Revert(ctx context.Context, app, actor string) (*flotillav1.RevertAppResponse, error) {
	targets, err := h.targets(app, "")
	if err != nil {
		return nil, err
	}
	src := targets[0].GetSource()
	// Reverting in Git means reverting the commit that last changed the
	// application's files: a chart from a repository has none in Git,
	// and a multi-source application's files span repositories.
	switch {
	case len(targets[0].GetSources()) > 0:
		return nil, fmt.Errorf("%w: %s has several sources: revert its commits in Git by hand, or roll it back by history id", api.ErrFailedPrecondition, app)
	case src.GetChart() != "":
		return nil, fmt.Errorf("%w: %s is chart %s %s from %s: revert the commit that changed its Application (%.8s) by hand, or roll it back by history id",
			api.ErrFailedPrecondition, app, src.GetChart(), src.GetChartVersion(), src.GetRepoUrl(), src.GetCommit())
	}
	for _, ds := range targets[1:] {
		if s := ds.GetSource(); s.GetRepoUrl() != src.GetRepoUrl() || s.GetTargetRevision() != src.GetTargetRevision() {
			return nil, fmt.Errorf("%w: %s comes from %s@%s in %s but %s@%s in %s: revert it in Git by hand", api.ErrFailedPrecondition, app,
				src.GetRepoUrl(), src.GetTargetRevision(), targets[0].GetCluster(), s.GetRepoUrl(), s.GetTargetRevision(), ds.GetCluster())
		}
	}
	var repo *watchedRepo
	for _, r := range h.repos {
		if config.NormalizeURL(r.mirror.URL()) == config.NormalizeURL(src.GetRepoUrl()) {
			repo = r
		}
	}
	if repo == nil {
		return nil, fmt.Errorf("%w: repository %s is not configured in the hub", api.ErrFailedPrecondition, src.GetRepoUrl())
	}
	// The application's files are exactly what its artifact holds.
	data, err := h.bus.GetArtifact(ctx, targets[0].GetArtifact().GetDigest())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
	}
	files, err := artifact.Files(data, artifact.DefaultLimits())
	if err != nil {
		return nil, err
	}
	branch := src.GetTargetRevision()
	if branch == "" || branch == "HEAD" {
		if branch, err = repo.mirror.DefaultBranch(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
		}
	}
	author := gitrepo.Author{Name: h.cfg.CommitAuthor.Name, Email: h.cfg.CommitAuthor.Email}
	res, err := repo.mirror.Revert(ctx, branch, files, author, fmt.Sprintf("Requested by %s with flotilla app rollback %s --git.", actor, app))
	switch {
	case errors.Is(err, gitrepo.ErrNothingToRevert), errors.Is(err, gitrepo.ErrRevertConflict), errors.Is(err, gitrepo.ErrPushRejected):
		return nil, fmt.Errorf("%w: %w", api.ErrFailedPrecondition, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
	}
	h.log.Info("pushed a revert", "app", app, "repo", src.GetRepoUrl(), "branch", branch, "reverted", res.Reverted.Hash.String(), "commit", res.Commit.String(), "actor", actor)
	h.event(ctx, &flotillav1.Event{Actor: actor, App: app, Type: flotillav1.EventType_EVENT_TYPE_NORMAL, Reason: flotillav1.ReasonReverted,
		Message:  fmt.Sprintf("%s pushed %s to %s, reverting %s (%s)", actor, res.Commit.String()[:8], branch, res.Reverted.Hash.String()[:8], strings.Join(res.Files, ", ")),
		Revision: res.Commit.String()})
	resp := &flotillav1.RevertAppResponse{RepoUrl: src.GetRepoUrl(), Branch: branch, Reverted: res.Reverted.Hash.String(), Commit: res.Commit.String(), Message: res.Message}
	// Publish it now, so the answer says which clusters it changes: those
	// are the ones worth waiting for.
	h.poll(ctx, repo)
	if err := h.reconcileAndWait(ctx); err != nil {
		h.log.Warn("revert pushed, not published yet", "app", app, "error", err)
		return resp, nil
	}
	targets, err = h.targets(app, "")
	if err != nil {
		return resp, nil // the revert removed the application everywhere
	}
	for _, ds := range targets {
		if ds.GetSource().GetCommit() == res.Commit.String() {
			resp.Clusters = append(resp.Clusters, &flotillav1.ClusterResult{Cluster: ds.GetCluster(), HistoryId: ds.GetHistoryId()})
		} else {
			resp.Unchanged = append(resp.Unchanged, ds.GetCluster())
		}
	}
	return resp, nil
}

// Rollout implements api.Hub: each cluster's agent acts on the
// application's Rollouts.
func (h *Hub) Rollout(ctx context.Context, app, cluster string, action flotillav1.RolloutAction, full bool, actor string) ([]*flotillav1.ClusterResult, error) {
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	return fanOut(ctx, h, targets, actor, func(c *flotillav1.AgentCommand) {
		c.Command = &flotillav1.AgentCommand_Rollout{Rollout: &flotillav1.RolloutCommand{Action: action, Full: full}}
	}, func(ds *flotillav1.DesiredState, r *flotillav1.AgentReply) *flotillav1.ClusterResult {
		return &flotillav1.ClusterResult{Cluster: ds.GetCluster(), HistoryId: ds.GetHistoryId(), Error: r.GetError(), Objects: r.GetObjects()}
	}), nil
}
