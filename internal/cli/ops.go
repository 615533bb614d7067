package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// waitOptions are the flags of the verbs that can wait for their effect.
type waitOptions struct {
	wait    bool
	timeout time.Duration
}

func (w *waitOptions) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "follow the clusters until the change is applied and healthy (or failed)")
	cmd.Flags().DurationVar(&w.timeout, "wait-timeout", 5*time.Minute, "how long --wait follows")
}

func historyCommand(g *globals) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "history APP",
		Short: "List the desired states published for an application, newest first",
		Long: `History lists, per cluster, every desired state the hub retains for the
application (64 by default): its id, commit, who and what caused it, and the
agent's result. Ids are per cluster; rollback names one.`,
		Example:           "  flotilla app history api-service\n  flotilla app history api-service --cluster prod-eu -o wide",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeApps,
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.GetAppHistory,
			func(args []string) *flotillav1.GetAppHistoryRequest {
				return &flotillav1.GetAppHistoryRequest{App: args[0], Cluster: cluster}
			},
			historyTable, nil),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	_ = cmd.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	return cmd
}

func historyTable(w *tabwriter.Writer, answer *flotillav1.GetAppHistoryResponse, wide bool) {
	fmt.Fprint(w, "CLUSTER\tID\tDEPLOYED\tINITIATOR\tREVISION\tRESULT\tMESSAGE")
	if wide {
		fmt.Fprint(w, "\tAUTHOR\tARTIFACT")
	}
	fmt.Fprintln(w)
	for _, e := range answer.GetEntries() {
		id := fmt.Sprint(e.GetHistoryId())
		if e.GetCurrent() {
			id += "*"
		}
		initiator := flotillav1.EnumWord(e.GetInitiator().String(), "INITIATOR_")
		if p := e.GetPin(); p != nil {
			initiator += fmt.Sprintf(" to %d by %s", p.GetRolledBackTo(), p.GetBy())
		}
		if e.GetDeleted() {
			initiator += " (removed)"
		}
		subject, _, _ := strings.Cut(e.GetSource().GetCommitMessage(), "\n")
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s", e.GetCluster(), id, ago(e.GetPublishedAt().AsTime()), initiator,
			e.GetSource().Revision(), oneLine(e.GetResult(), 60), oneLine(subject, 50))
		if wide {
			artifact := e.GetArtifactDigest()
			if !e.GetArtifactAvailable() {
				artifact += " (gone)"
			}
			fmt.Fprintf(w, "\t%s\t%s", e.GetSource().GetCommitAuthor(), artifact)
		}
		fmt.Fprintln(w)
	}
}

func diffCommand(g *globals) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "diff APP",
		Short: "Show how the live objects differ from the desired state, per cluster",
		Long: `Diff asks each cluster's agent to compare the application's desired state
with its live objects by server-side dry-run, as a sync would, and prints a
unified diff per object. Nothing is changed. Secret values are masked.

Exit codes: 0 no differences, 6 differences found, others as for every command.`,
		Example:           "  flotilla app diff api-service\n  flotilla app diff api-service --cluster prod-eu",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeApps,
		RunE: fetchAndPrint(g, agentWait, flotillav1connect.HubServiceClient.DiffApp,
			func(args []string) *flotillav1.DiffAppRequest {
				return &flotillav1.DiffAppRequest{App: args[0], Cluster: cluster}
			},
			diffTable, diffExit),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	_ = cmd.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	return cmd
}

func diffTable(w *tabwriter.Writer, answer *flotillav1.DiffAppResponse, _ bool) {
	for _, c := range answer.GetClusters() {
		switch {
		case c.GetError() != "":
			fmt.Fprintf(w, "=== %s: %s\n", c.GetCluster(), c.GetError())
		case len(c.GetDiffs()) == 0:
			fmt.Fprintf(w, "=== %s (history %d): in sync\n", c.GetCluster(), c.GetHistoryId())
		default:
			fmt.Fprintf(w, "=== %s (history %d): %d objects differ\n", c.GetCluster(), c.GetHistoryId(), len(c.GetDiffs()))
			for _, d := range c.GetDiffs() {
				fmt.Fprintf(w, "--- %s %s\n%s", d.GetAction(), objectName(d), d.GetDiff())
			}
		}
	}
}

// diffExit fails the command when a cluster gave no diff, else exits
// ExitDiffers when one found differences.
func diffExit(_ *cobra.Command, _ []string, answer *flotillav1.DiffAppResponse) error {
	var differs, failed []string
	for _, c := range answer.GetClusters() {
		if c.GetError() != "" {
			failed = append(failed, c.GetCluster()+": "+c.GetError())
		} else if len(c.GetDiffs()) > 0 {
			differs = append(differs, c.GetCluster())
		}
	}
	switch {
	case len(failed) > 0:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("no diff from %s", strings.Join(failed, "; "))}
	case len(differs) > 0:
		return &ExitError{Code: ExitDiffers, Err: fmt.Errorf("differences in %s", strings.Join(differs, ", "))}
	}
	return nil
}

func objectName(d *flotillav1.ObjectDiff) string {
	kind := d.GetKind()
	if d.GetGroup() != "" {
		kind += "." + d.GetGroup()
	}
	if d.GetNamespace() == "" {
		return kind + "/" + d.GetName()
	}
	return kind + "/" + d.GetNamespace() + "/" + d.GetName()
}

func syncCommand(g *globals) *cobra.Command {
	var cluster string
	var wait waitOptions
	cmd := &cobra.Command{
		Use:   "sync APP",
		Short: "Fetch Git now and have each cluster re-apply the application",
		Long: `Sync makes the hub fetch Git and publish what changed, then asks each
cluster's agent to re-apply the application's desired state at once, writing
every object that differs from it (drift included). It returns when the
objects are applied; --wait follows them until healthy. Needs the operator
role.`,
		Example:           "  flotilla app sync api-service\n  flotilla app sync api-service --cluster prod-eu --wait",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeApps,
		RunE: fetchAndPrint(g, agentWait, flotillav1connect.HubServiceClient.SyncApp,
			func(args []string) *flotillav1.SyncAppRequest {
				return &flotillav1.SyncAppRequest{App: args[0], Cluster: cluster}
			},
			func(w *tabwriter.Writer, answer *flotillav1.SyncAppResponse, _ bool) {
				resultTable(w, answer.GetClusters(), "synced")
			},
			func(cmd *cobra.Command, args []string, answer *flotillav1.SyncAppResponse) error {
				return g.settle(cmd, args[0], answer.GetClusters(), wait)
			}),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	_ = cmd.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	wait.register(cmd)
	return cmd
}

func rollbackCommand(g *globals) *cobra.Command {
	var cluster string
	var revision uint64
	var viaGit bool
	var wait waitOptions
	revert := fetchAndPrint(g, agentWait, flotillav1connect.HubServiceClient.RevertApp,
		func(args []string) *flotillav1.RevertAppRequest { return &flotillav1.RevertAppRequest{App: args[0]} },
		func(w *tabwriter.Writer, answer *flotillav1.RevertAppResponse, _ bool) {
			fmt.Fprintf(w, "pushed %.8s to %s of %s, reverting %.8s\n", answer.GetCommit(), answer.GetBranch(), answer.GetRepoUrl(), answer.GetReverted())
			for _, r := range answer.GetClusters() {
				fmt.Fprintf(w, "%s\tpublished (history %d)\n", r.GetCluster(), r.GetHistoryId())
			}
			for _, c := range answer.GetUnchanged() {
				fmt.Fprintf(w, "%s\tdesired state unchanged by the revert: nothing to wait for\n", c)
			}
		},
		func(cmd *cobra.Command, args []string, answer *flotillav1.RevertAppResponse) error {
			switch {
			case !wait.wait:
				return nil
			case len(answer.GetClusters()) > 0:
				return g.settle(cmd, args[0], answer.GetClusters(), wait)
			case len(answer.GetUnchanged()) > 0:
				return nil // the revert changed no cluster's desired state
			}
			// Not published yet: follow every cluster to the commit.
			return g.follow(cmd, args[0], wait, nil, answer.GetCommit())
		})
	rollback := fetchAndPrint(g, agentWait, flotillav1connect.HubServiceClient.RollbackApp,
		func(args []string) *flotillav1.RollbackAppRequest {
			return &flotillav1.RollbackAppRequest{App: args[0], HistoryId: revision, Cluster: cluster}
		},
		func(w *tabwriter.Writer, answer *flotillav1.RollbackAppResponse, _ bool) {
			resultTable(w, answer.GetClusters(), fmt.Sprintf("rolled back to %d and pinned", revision))
		},
		func(cmd *cobra.Command, args []string, answer *flotillav1.RollbackAppResponse) error {
			return g.settle(cmd, args[0], answer.GetClusters(), wait)
		})
	cmd := &cobra.Command{
		Use:   "rollback APP (--revision ID | --git)",
		Short: "Return an application to an earlier desired state",
		Long: `With --revision, the hub republishes that history entry's desired state
(see "flotilla app history") and pins the application to it, in every
cluster or the one named by --cluster. It works with auto-sync on. The pin
holds until Git's desired state for the application changes (a commit that
touches its files or its Application) or "flotilla app unpin" releases it.
History ids are per cluster; without --cluster every cluster must have the
id, or nothing is changed.

With --git, the hub pushes a revert of the last commit that changed the
application's files, with its own Git credentials, and the fleet follows
through the normal flow: the audit trail is in Git. A push the remote
refuses (the branch moved on, a protected branch) changes nothing.

Needs the operator role.`,
		Example: `  flotilla app rollback api-service --revision 42
  flotilla app rollback api-service --revision 42 --cluster prod-eu --wait
  flotilla app rollback api-service --git --wait`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			if viaGit == (revision != 0) {
				return &ExitError{Code: ExitUsage, Err: errors.New("name exactly one of --revision ID or --git")}
			}
			if viaGit && cluster != "" {
				return &ExitError{Code: ExitUsage, Err: errors.New("--git reverts in Git for every cluster; --cluster does not apply")}
			}
			if viaGit {
				return revert(cmd, args)
			}
			return rollback(cmd, args)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	cmd.Flags().Uint64Var(&revision, "revision", 0, "history id to return to (flotilla app history)")
	cmd.Flags().BoolVar(&viaGit, "git", false, "push a revert commit instead")
	_ = cmd.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	wait.register(cmd)
	return cmd
}

func unpinCommand(g *globals) *cobra.Command {
	var cluster string
	var wait waitOptions
	cmd := &cobra.Command{
		Use:               "unpin APP",
		Short:             "Release a rollback pin so the application follows Git again",
		Example:           "  flotilla app unpin api-service --wait",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeApps,
		RunE: fetchAndPrint(g, agentWait, flotillav1connect.HubServiceClient.UnpinApp,
			func(args []string) *flotillav1.UnpinAppRequest {
				return &flotillav1.UnpinAppRequest{App: args[0], Cluster: cluster}
			},
			func(w *tabwriter.Writer, answer *flotillav1.UnpinAppResponse, _ bool) {
				resultTable(w, answer.GetClusters(), "unpinned")
			},
			func(cmd *cobra.Command, args []string, answer *flotillav1.UnpinAppResponse) error {
				return g.settle(cmd, args[0], answer.GetClusters(), wait)
			}),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	_ = cmd.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	wait.register(cmd)
	return cmd
}

// resultTable prints a mutating call's per-cluster results: what was done
// (with the history id it led to) or why it failed.
func resultTable(w *tabwriter.Writer, results []*flotillav1.ClusterResult, done string) {
	for _, r := range results {
		if r.GetError() != "" {
			fmt.Fprintf(w, "%s\tfailed: %s\n", r.GetCluster(), r.GetError())
			continue
		}
		fmt.Fprintf(w, "%s\t%s (history %d)\n", r.GetCluster(), done, r.GetHistoryId())
	}
}

// settle fails the command when a cluster failed, else follows the
// results with --wait.
func (g *globals) settle(cmd *cobra.Command, app string, results []*flotillav1.ClusterResult, wait waitOptions) error {
	var failed []string
	targets := map[string]uint64{}
	for _, r := range results {
		if r.GetError() != "" {
			failed = append(failed, r.GetCluster())
		} else {
			targets[r.GetCluster()] = r.GetHistoryId()
		}
	}
	if len(failed) > 0 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("failed in %s", strings.Join(failed, ", "))}
	}
	if !wait.wait {
		return nil
	}
	return g.follow(cmd, app, wait, targets, "")
}

// follow polls the application until every target cluster reports at
// least its history id (or, with commit set, the desired state of that
// commit) with a finished sync and a settled health, printing each change.
func (g *globals) follow(cmd *cobra.Command, app string, wait waitOptions, targets map[string]uint64, commit string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), wait.timeout)
	defer cancel()
	out := cmd.ErrOrStderr()
	last := map[string]string{}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		rctx, rcancel := context.WithTimeout(ctx, g.timeout)
		resp, err := g.client().GetApp(rctx, connect.NewRequest(&flotillav1.GetAppRequest{App: app}))
		rcancel()
		if err != nil && ctx.Err() == nil {
			return hubError(g, err)
		}
		if err == nil {
			settled, failures := progress(out, resp.Msg.GetApps(), targets, commit, last)
			if settled {
				if len(failures) > 0 {
					return &ExitError{Code: ExitFailure, Err: errors.New(strings.Join(failures, "; "))}
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			var pending []string
			for _, c := range slices.Sorted(maps.Keys(last)) {
				pending = append(pending, c+" "+last[c])
			}
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("still not settled after %s: %s", wait.timeout, strings.Join(pending, "; "))}
		case <-t.C:
		}
	}
}

// progress prints what changed since last and says whether every target
// settled, with the failures among them.
func progress(out io.Writer, apps []*flotillav1.AppInfo, targets map[string]uint64, commit string, last map[string]string) (bool, []string) {
	settled := true
	var failures []string
	seen := 0
	for _, a := range apps {
		want, ok := targets[a.GetCluster()]
		if commit != "" {
			ok = true
			if a.GetDesired().GetSource().GetCommit() == commit {
				want = a.GetDesired().GetHistoryId()
			} else {
				want = a.GetDesired().GetHistoryId() + 1 // not published yet
			}
		}
		if !ok {
			continue
		}
		seen++
		st := a.GetStatus()
		line := "waiting for the agent"
		done := false
		if st.GetHistoryId() >= want && st != nil {
			phase := flotillav1.EnumWord(st.GetPhase().String(), "SYNC_PHASE_")
			health := flotillav1.EnumWord(st.GetHealth().String(), "HEALTH_STATUS_")
			line = fmt.Sprintf("history %d %s %s", st.GetHistoryId(), phase, health)
			switch {
			case st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_FAILED || st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_ERROR:
				done = true
				failures = append(failures, fmt.Sprintf("%s: sync %s: %s", a.GetCluster(), phase, st.GetMessage()))
			case st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED && st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:
				done = true
			case st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED && st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED:
				done = true
				failures = append(failures, fmt.Sprintf("%s: Degraded: %s", a.GetCluster(), st.GetMessage()))
			}
		}
		if last[a.GetCluster()] != line {
			last[a.GetCluster()] = line
			fmt.Fprintf(out, "%s  %s: %s\n", now().Format("15:04:05"), a.GetCluster(), line)
		}
		settled = settled && done
	}
	return settled && seen > 0, failures
}

func eventsCommand(g *globals) *cobra.Command {
	var cluster, app string
	var limit int32
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the sync history and audit stream",
		Long: `Events lists what the hub, the agents and operators did, oldest first:
publications, syncs, drift, rollbacks, and an Audit entry for every call that
changes the fleet (who, what, when, outcome).`,
		Example: "  flotilla events --app api-service\n  flotilla events --cluster prod-eu --limit 20",
		Args:    cobra.NoArgs,
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.ListEvents,
			func([]string) *flotillav1.ListEventsRequest {
				return &flotillav1.ListEventsRequest{Cluster: cluster, App: app, Limit: limit}
			},
			eventTable, nil),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only events of this cluster")
	cmd.Flags().StringVar(&app, "app", "", "only events of this application")
	cmd.Flags().Int32Var(&limit, "limit", 50, "the newest this many events")
	_ = cmd.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	_ = cmd.RegisterFlagCompletionFunc("app", g.completeApps)
	return cmd
}

func eventTable(w *tabwriter.Writer, answer *flotillav1.ListEventsResponse, _ bool) {
	fmt.Fprintln(w, "TIME\tCLUSTER\tAPP\tTYPE\tREASON\tACTOR\tMESSAGE")
	for _, e := range answer.GetEvents() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetTime().AsTime().Local().Format(time.DateTime), e.GetCluster(), e.GetApp(),
			flotillav1.EnumWord(e.GetType().String(), "EVENT_TYPE_"), e.GetReason(), e.GetActor(), oneLine(e.GetMessage(), 120))
	}
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max-1] + "…"
	}
	return s
}

// completeApps offers the application names the hub knows.
func (g *globals) completeApps(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 && cmd.Name() != "events" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := g.context(cmd)
	defer cancel()
	resp, err := g.client().ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{}))
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, a := range resp.Msg.GetApps() {
		if !slices.Contains(names, a.GetApp()) {
			names = append(names, a.GetApp())
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeClusters offers the cluster names the hub knows.
func (g *globals) completeClusters(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := g.context(cmd)
	defer cancel()
	resp, err := g.client().ListClusters(ctx, connect.NewRequest(&flotillav1.ListClustersRequest{}))
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, c := range resp.Msg.GetClusters() {
		names = append(names, c.GetRegistration().GetName())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
