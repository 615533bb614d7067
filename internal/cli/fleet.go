package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

func fleetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Fleet rollouts: a change released wave by wave of clusters",
		Long: `An ApplicationSet with Argo CD's RollingSync strategy, or an ApplicationSet
or Application with the flotilla.dev/waves annotation, reaches the fleet in
waves: the next wave is published only when every cluster of the current one
reports the new revision Synced and Healthy and the wave's gate (bake time,
analysis, approval) passed. NAME is the ApplicationSet's or Application's.`,
	}
	var wait waitOptions
	status := &cobra.Command{
		Use:     "status NAME",
		Short:   "Show a fleet rollout: its waves, their clusters and gates, and what it waits for",
		Example: "  flotilla fleet status guestbook\n  flotilla fleet status guestbook --wait -o json",
		Args:    cobra.ExactArgs(1),
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.GetFleetRollout,
			func(args []string) *flotillav1.GetFleetRolloutRequest {
				return &flotillav1.GetFleetRolloutRequest{Name: args[0]}
			},
			func(w *tabwriter.Writer, answer *flotillav1.GetFleetRolloutResponse, wide bool) {
				fleetTable(w, answer.GetRollout(), wide)
			},
			func(cmd *cobra.Command, args []string, _ *flotillav1.GetFleetRolloutResponse) error {
				return g.followFleet(cmd, args[0], wait)
			}),
	}
	wait.register(status)

	var wave int32
	var promoteWait waitOptions
	promote := &cobra.Command{
		Use:   "promote NAME",
		Short: "Approve or skip the current wave's gate, or release a wave that waits for an operator",
		Long: `promote ends what the current wave waits for: a wave released only by an
operator (a RollingSync step with maxUpdate 0, or the Applications no step
selects) is released; a wave's gate (approval, and with it any bake time or
analysis still running) is passed. A failed rollout that was not rolled back
resumes with the next wave. Needs the operator role.`,
		Example: "  flotilla fleet promote guestbook\n  flotilla fleet promote guestbook --wave 2 --wait",
		Args:    cobra.ExactArgs(1),
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.PromoteFleetRollout,
			func(args []string) *flotillav1.PromoteFleetRolloutRequest {
				req := &flotillav1.PromoteFleetRolloutRequest{Name: args[0]}
				if wave >= 0 {
					req.Wave = &wave
				}
				return req
			},
			func(w *tabwriter.Writer, answer *flotillav1.PromoteFleetRolloutResponse, wide bool) {
				fleetTable(w, answer.GetRollout(), wide)
			},
			func(cmd *cobra.Command, args []string, _ *flotillav1.PromoteFleetRolloutResponse) error {
				return g.followFleet(cmd, args[0], promoteWait)
			}),
	}
	promote.Flags().Int32Var(&wave, "wave", -1, "only if this is the current wave (counted from 0)")
	promoteWait.register(promote)

	var rollback bool
	var abortWait waitOptions
	abort := &cobra.Command{
		Use:     "abort NAME",
		Short:   "Halt a fleet rollout (and with --rollback, put the clusters it updated back)",
		Example: "  flotilla fleet abort guestbook --rollback",
		Args:    cobra.ExactArgs(1),
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.AbortFleetRollout,
			func(args []string) *flotillav1.AbortFleetRolloutRequest {
				return &flotillav1.AbortFleetRolloutRequest{Name: args[0], Rollback: rollback}
			},
			func(w *tabwriter.Writer, answer *flotillav1.AbortFleetRolloutResponse, wide bool) {
				fleetTable(w, answer.GetRollout(), wide)
			},
			func(cmd *cobra.Command, args []string, _ *flotillav1.AbortFleetRolloutResponse) error {
				return g.followFleet(cmd, args[0], abortWait)
			}),
	}
	abort.Flags().BoolVar(&rollback, "rollback", false, "give the clusters the rollout updated their previous desired state back")
	abortWait.register(abort)
	cmd.AddCommand(status, promote, abort)
	return cmd
}

// followFleet, with --wait, polls the rollout until it ends or waits for
// an operator, printing each change of a wave; a rollout that failed or
// was aborted is the command's failure.
func (g *globals) followFleet(cmd *cobra.Command, name string, wait waitOptions) error {
	if !wait.wait {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), wait.timeout)
	defer cancel()
	out := cmd.ErrOrStderr()
	last := map[int32]string{}
	first := ""

	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		rctx, rcancel := context.WithTimeout(ctx, g.timeout)
		resp, err := g.client().GetFleetRollout(rctx, connect.NewRequest(&flotillav1.GetFleetRolloutRequest{Name: name}))
		rcancel()
		if err != nil && ctx.Err() == nil {
			return hubError(g, err)
		}
		if err == nil {
			r := resp.Msg.GetRollout()
			if first == "" {
				first = r.GetId()
			}
			if r.GetId() != first {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("fleet rollout %s was superseded by %s (a newer commit)", first, r.GetId())}
			}
			printWaveChanges(out, r, last)
			switch r.GetPhase() {
			case flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, flotillav1.FleetPhase_FLEET_PHASE_PAUSED:
				return nil
			case flotillav1.FleetPhase_FLEET_PHASE_FAILED, flotillav1.FleetPhase_FLEET_PHASE_ABORTED:
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("fleet rollout %s: %s", phaseWord(r), r.GetMessage())}
			}
		}
		select {
		case <-ctx.Done():
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("fleet rollout still in progress after %s", wait.timeout)}
		case <-t.C:
		}
	}
}

func printWaveChanges(out io.Writer, r *flotillav1.FleetRollout, last map[int32]string) {
	for _, w := range r.GetWaves() {
		line := fmt.Sprintf("wave %d (%s): %s", w.GetIndex(), w.GetSelector(), waveWord(w))
		if w.GetMessage() != "" {
			line += ": " + w.GetMessage()
		}
		if last[w.GetIndex()] != line {
			last[w.GetIndex()] = line
			fmt.Fprintln(out, line)
		}
	}
}

// fleetTable shows the rollout, its waves with their gates, and each
// wave's clusters with their state and analysis.
func fleetTable(w *tabwriter.Writer, r *flotillav1.FleetRollout, wide bool) {
	fmt.Fprintf(w, "ROLLOUT\t%s\n", r.GetId())
	fmt.Fprintf(w, "REVISION\t%s\n", (&flotillav1.Source{Commit: r.GetRevision()}).Revision())
	fmt.Fprintf(w, "PHASE\t%s\n", phaseWord(r))
	fmt.Fprintf(w, "MESSAGE\t%s\n", r.GetMessage())
	if r.GetRollback() {
		fmt.Fprintf(w, "ROLLBACK\t%s\n", map[bool]string{true: "done", false: "in progress"}[r.GetRolledBack()])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "WAVE\tSELECTOR\tPHASE\tHEALTHY\tGATE\tMESSAGE")
	for _, wave := range r.GetWaves() {
		healthy := 0
		for _, t := range wave.GetTargets() {
			if t.GetHealthy() {
				healthy++
			}
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%d/%d\t%s\t%s\n", wave.GetIndex(), wave.GetSelector(), waveWord(wave), healthy, len(wave.GetTargets()), gateWords(wave.GetGate()), oneLine(wave.GetMessage(), 100))
	}
	fmt.Fprintln(w)
	header := "WAVE\tCLUSTER\tAPP\tHISTORY\tSTATE\tANALYSIS"
	if wide {
		header += "\tPREVIOUS\tRELEASED"
	}
	fmt.Fprintln(w, header)
	for _, wave := range r.GetWaves() {
		for _, t := range wave.GetTargets() {
			fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s", wave.GetIndex(), t.GetCluster(), t.GetApp(), t.GetHistoryId(), t.GetState(), analysisWords(t.GetAnalysis().GetAnalysis()))
			if wide {
				released := ""
				if t.GetReleasedAt() != nil {
					released = ago(t.GetReleasedAt().AsTime())
				}
				fmt.Fprintf(w, "\t%d\t%s", t.GetPreviousHistoryId(), released)
			}
			fmt.Fprintln(w)
		}
	}
}

func phaseWord(r *flotillav1.FleetRollout) string {
	return flotillav1.EnumWord(r.GetPhase().String(), "FLEET_PHASE_")
}

func waveWord(w *flotillav1.FleetWaveStatus) string {
	return flotillav1.EnumWord(w.GetPhase().String(), "WAVE_PHASE_")
}

func gateWords(g *flotillav1.FleetGate) string {
	var parts []string
	if s := g.GetBakeSeconds(); s > 0 {
		parts = append(parts, "bake "+(time.Duration(s)*time.Second).String())
	}
	if a := g.GetAnalysis(); a != nil {
		var names []string
		for _, t := range a.GetTemplates() {
			names = append(names, t.GetTemplateName())
		}
		policy := g.GetMinSuccessful()
		if policy == "" {
			policy = "all"
		}
		parts = append(parts, fmt.Sprintf("analysis %s (%s must pass)", strings.Join(names, "+"), policy))
	}
	if g.GetApproval() {
		parts = append(parts, "approval")
	}
	if len(parts) == 0 {
		return "health"
	}
	return strings.Join(parts, ", ")
}

func analysisWords(a *flotillav1.AnalysisStatus) string {
	if a == nil {
		return ""
	}
	parts := []string{a.GetPhase()}
	for _, m := range a.GetMeasurements() {
		parts = append(parts, fmt.Sprintf("%s=%s", m.GetMetric(), m.GetValue()))
	}
	return strings.Join(parts, " ")
}
