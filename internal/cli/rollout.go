package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

func rolloutCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Promote, abort, retry or pause an application's Argo Rollouts",
		Long: `Each verb reaches the agents of the application's clusters, which patch
the application's Rollouts exactly as the kubectl-argo-rollouts plugin does;
the cluster's rollouts controller carries the change out. Needs the operator
role.`,
	}
	verbs := []struct {
		use, short, example string
		action              flotillav1.RolloutAction
	}{
		{"promote", "Resume a paused rollout or move it past its current step (--full: to the end)", "  flotilla rollout promote api-service\n  flotilla rollout promote api-service --cluster prod-eu --full", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE},
		{"abort", "Abort a rollout: back to the stable version", "  flotilla rollout abort api-service --cluster prod-eu", flotillav1.RolloutAction_ROLLOUT_ACTION_ABORT},
		{"retry", "Start an aborted rollout again", "  flotilla rollout retry api-service --cluster prod-eu", flotillav1.RolloutAction_ROLLOUT_ACTION_RETRY},
		{"pause", "Pause a rollout where it is", "  flotilla rollout pause api-service", flotillav1.RolloutAction_ROLLOUT_ACTION_PAUSE},
	}
	for _, v := range verbs {
		var cluster string
		var full bool
		sub := &cobra.Command{
			Use:               v.use + " APP",
			Short:             v.short,
			Example:           v.example,
			Args:              cobra.ExactArgs(1),
			ValidArgsFunction: g.completeApps,
			RunE: fetchAndPrint(g, agentWait, flotillav1connect.HubServiceClient.RolloutApp,
				func(args []string) *flotillav1.RolloutAppRequest {
					return &flotillav1.RolloutAppRequest{App: args[0], Cluster: cluster, Action: v.action, Full: full}
				},
				func(w *tabwriter.Writer, answer *flotillav1.RolloutAppResponse, _ bool) {
					for _, r := range answer.GetClusters() {
						if r.GetError() != "" {
							fmt.Fprintf(w, "%s\tfailed: %s\n", r.GetCluster(), r.GetError())
							continue
						}
						fmt.Fprintf(w, "%s\t%s: %s\n", r.GetCluster(), v.use, strings.Join(r.GetObjects(), ", "))
					}
				},
				func(_ *cobra.Command, _ []string, answer *flotillav1.RolloutAppResponse) error {
					var failed []string
					for _, r := range answer.GetClusters() {
						if r.GetError() != "" {
							failed = append(failed, r.GetCluster())
						}
					}
					if len(failed) > 0 {
						return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s failed in %s", v.use, strings.Join(failed, ", "))}
					}
					return nil
				}),
		}
		sub.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
		_ = sub.RegisterFlagCompletionFunc("cluster", g.completeClusters)
		if v.action == flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE {
			sub.Flags().BoolVar(&full, "full", false, "skip the remaining steps, pauses and analysis")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}
