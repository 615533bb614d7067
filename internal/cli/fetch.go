package cli

import (
	"context"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// agentWait is the time a call that reaches the agents (diff, sync,
// rollback, unpin, rollout) gets beyond --timeout: the agents render,
// dry-run or apply before they answer.
const agentWait = time.Minute

// fetchAndPrint is the RunE of a command that makes one call to the hub and
// prints the answer: as a table (table writes it, wide with -o wide), or
// with -o json or yaml as the message itself.
//
// call is the client's method (flotillav1connect.HubServiceClient.ListApps),
// request builds its request from the arguments and flags when the command
// runs, and the call may take --timeout plus extra. then, unless nil, runs
// after the answer is printed and gives the command its exit: clusters that
// failed, differences found, or --wait following the change.
func fetchAndPrint[Req, Res any, Answer interface {
	*Res
	proto.Message
}](
	g *globals,
	extra time.Duration,
	call func(flotillav1connect.HubServiceClient, context.Context, *connect.Request[Req]) (*connect.Response[Res], error),
	request func(args []string) *Req,
	table func(w *tabwriter.Writer, answer Answer, wide bool),
	then func(cmd *cobra.Command, args []string, answer Answer) error,
) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout+extra)
		defer cancel()
		resp, err := call(g.client(), ctx, connect.NewRequest(request(args)))
		if err != nil {
			return hubError(g, err)
		}
		answer := Answer(resp.Msg)
		if err := g.print(cmd.OutOrStdout(), answer, func(w *tabwriter.Writer, wide bool) { table(w, answer, wide) }); err != nil {
			return err
		}
		if then == nil {
			return nil
		}
		return then(cmd, args, answer)
	}
}
