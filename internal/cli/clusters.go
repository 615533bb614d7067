package cli

import (
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func clusterAddCommand(g *globals) *cobra.Command {
	var labels, out, namespace string
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Make a cluster's identity and print its agent's credentials Secret",
		Long: `Add makes a cluster's identity on the hub: its labels, which target
applications, and NATS credentials that reach only the cluster's own
desired states, status and commands. The credentials are shown once: the
command prints the agent's Secret (apply it in the cluster, then install
the agent's chart, deployments/charts/flotilla-agent: docs/install.md),
or with --out writes the bundle's files to a directory for an agent's
--credentials. Needs the admin role.`,
		Example: "  flotilla cluster add prod-eu --labels env=production,region=eu | kubectl apply -f -\n  flotilla cluster add dev-1 --labels env=dev --out ./dev-1-credentials",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			parsed, err := labelsFlag(labels)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			resp, err := g.client().AddCluster(ctx, connect.NewRequest(&flotillav1.AddClusterRequest{Name: args[0], Labels: parsed}))
			if err != nil {
				return hubError(g, err)
			}
			creds := resp.Msg.GetCredentials()
			if len(creds.GetNatsCreds()) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: the hub uses an external NATS, whose operator issues the cluster's NATS credentials (docs/operations.md); add them to the bundle as", clustercreds.NATSCredsFile)
			}
			if out != "" {
				if err := clustercreds.Write(out, creds); err != nil {
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "cluster %s added; its credentials are in %s: run its agent with --credentials %s\n", args[0], out, out)
				return err
			}
			secret, err := clustercreds.Secret(creds, namespace)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "cluster %s added: apply this Secret in the cluster (kubectl apply -f -), then install the agent chart in its namespace (docs/install.md)\n", args[0])
			_, err = cmd.OutOrStdout().Write(secret)
			return err
		},
	}
	cmd.Flags().StringVar(&labels, "labels", "", "the cluster's labels, k=v,k=v (applications target clusters by them)")
	cmd.Flags().StringVar(&out, "out", "", "write the bundle's files to this directory instead of printing the Secret")
	cmd.Flags().StringVar(&namespace, "namespace", "flotilla-system", "namespace of the agent's Secret")
	return cmd
}

func clusterRevokeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Cut a cluster off: close its connection and refuse its credentials",
		Long: `Revoke marks the cluster's identity revoked: the hub publishes nothing
more for it, its NATS connection is closed within seconds and its
credentials are refused from then on. Add the cluster again to issue new
credentials. Needs the admin role.`,
		Example: "  flotilla cluster revoke prod-eu",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.context(cmd)
			defer cancel()
			resp, err := g.client().RevokeCluster(ctx, connect.NewRequest(&flotillav1.RevokeClusterRequest{Name: args[0]}))
			if err != nil {
				return hubError(g, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "cluster %s revoked at %s: its connection is closed and its credentials are refused\n",
				args[0], resp.Msg.GetRevokedAt().AsTime().Format(time.RFC3339))
			return err
		},
	}
}

func clusterLabelCommand(g *globals) *cobra.Command {
	var labels string
	cmd := &cobra.Command{
		Use:   "label NAME --labels k=v,...",
		Short: "Replace a cluster's labels, which retargets applications",
		Long: `Label replaces the labels of a cluster's identity. Applications target
clusters by these labels (an agent cannot choose its own), so the hub
publishes what the new labels select and deletes what they no longer do.
Needs the admin role.`,
		Example: "  flotilla cluster label prod-us --labels env=staging,region=us",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			parsed, err := labelsFlag(labels)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			if _, err := g.client().LabelCluster(ctx, connect.NewRequest(&flotillav1.LabelClusterRequest{Name: args[0], Labels: parsed})); err != nil {
				return hubError(g, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "cluster %s labelled %s\n", args[0], labels)
			return err
		},
	}
	cmd.Flags().StringVar(&labels, "labels", "", "the cluster's labels, k=v,k=v")
	return cmd
}

// labelsFlag parses --labels k=v,k=v; a bad one is a usage error.
func labelsFlag(s string) (map[string]string, error) {
	parsed, err := k8slabels.ConvertSelectorToLabelsMap(s)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("--labels: %w", err)}
	}
	return parsed, nil
}
