package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// start makes the rollout of the plan's changes: a wave's targets are the
// changed keys among its keys; it enters the first wave with any.
func start(plan *Plan, changes []publish.Change, now time.Time) *flotillav1.FleetRollout {
	byKey := map[string]publish.Change{}
	for _, c := range changes {
		byKey[c.Key] = c
	}
	r := &flotillav1.FleetRollout{SchemaVersion: 1, Id: plan.ID() + "@" + target(changes), Kind: plan.Kind, Name: plan.Name,
		Revision: revision(changes), AutoRollback: plan.AutoRollback, StartedAt: timestamppb.New(now)}
	for i, w := range plan.Waves {
		ws := &flotillav1.FleetWaveStatus{Index: int32(i), Selector: w.Selector, Phase: flotillav1.WavePhase_WAVE_PHASE_PENDING, Gate: gateOf(w.Gate)}
		for _, key := range w.Keys {
			if c, ok := byKey[key]; ok {
				ws.Targets = append(ws.Targets, newTarget(c))
			}
		}
		ws.MaxUpdate = int32(len(ws.Targets))
		if w.Manual {
			ws.MaxUpdate = 0
		} else if w.MaxUpdate != nil {
			n, err := appspec.MaxUpdate(w.MaxUpdate, len(ws.Targets))
			if err == nil {
				ws.MaxUpdate = int32(n)
			}
		}
		r.Waves = append(r.Waves, ws)
	}
	enter(r, 0, now)
	return r
}

func newTarget(c publish.Change) *flotillav1.FleetTarget {
	cluster, app, _ := appkey.Split(c.Key)
	return &flotillav1.FleetTarget{Cluster: cluster, App: app, Content: c.Content, PreviousHistoryId: c.Previous, State: "pending"}
}

// target names what a rollout releases: a short hash of its keys' contents.
func target(changes []publish.Change) string {
	lines := make([]string, 0, len(changes))
	for _, c := range changes {
		lines = append(lines, c.Key+"="+c.Content)
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:6])
}

// revision is the commit the changes publish (the first one's).
func revision(changes []publish.Change) string {
	for _, c := range changes {
		if c.App != nil && c.App.Commit != nil {
			return c.App.Commit.Hash.String()
		}
	}
	return ""
}

func gateOf(g appspec.WaveGate) *flotillav1.FleetGate {
	out := &flotillav1.FleetGate{BakeSeconds: int64(g.BakeTime / time.Second), Approval: g.Approval}
	if g.MinSuccessful != nil {
		out.MinSuccessful = g.MinSuccessful.String()
	}
	if a := g.Analysis; a != nil {
		out.Analysis = &flotillav1.WaveAnalysis{}
		for _, t := range a.Templates {
			out.Analysis.Templates = append(out.Analysis.Templates, &flotillav1.AnalysisTemplateRef{TemplateName: t.TemplateName, ClusterScope: t.ClusterScope})
		}
		for _, arg := range a.Args {
			pa := &flotillav1.AnalysisArg{Name: arg.Name, Value: arg.Value}
			if ref := arg.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
				pa.SecretName, pa.SecretKey = ref.SecretKeyRef.Name, ref.SecretKeyRef.Key
			}
			out.Analysis.Args = append(out.Analysis.Args, pa)
		}
	}
	return out
}

// supersedes reports whether changes are not what r releases: a key's
// content differs from its target's. Keys r does not hold (a cluster that
// joined) do not supersede it.
func supersedes(r *flotillav1.FleetRollout, changes []publish.Change) bool {
	content := map[string]string{}
	for _, w := range r.GetWaves() {
		for _, t := range w.GetTargets() {
			content[appkey.Join(t.GetCluster(), t.GetApp())] = t.GetContent()
		}
	}
	for _, c := range changes {
		if have, ok := content[c.Key]; ok && have != c.Content {
			return true
		}
	}
	return false
}

// adopt adds the changes r does not hold to the waves the plan puts them
// in: a wave r passed releases them at once.
func adopt(r *flotillav1.FleetRollout, plan *Plan, changes []publish.Change) {
	held := map[string]bool{}
	for _, w := range r.GetWaves() {
		for _, t := range w.GetTargets() {
			held[appkey.Join(t.GetCluster(), t.GetApp())] = true
		}
	}
	for _, c := range changes {
		if held[c.Key] {
			continue
		}
		for i, w := range plan.Waves {
			if i < len(r.Waves) && slices.Contains(w.Keys, c.Key) {
				r.Waves[i].Targets = append(r.Waves[i].Targets, newTarget(c))
				if r.Waves[i].GetMaxUpdate() > 0 || !w.Manual {
					r.Waves[i].MaxUpdate++
				}
			}
		}
	}
}

// active reports whether r is still moving (or waiting for an operator).
func active(r *flotillav1.FleetRollout) bool {
	return r.GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING || r.GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_PAUSED
}

// enter moves r to wave i, passing over waves nothing changed in; past
// the last wave, r succeeded.
func enter(r *flotillav1.FleetRollout, i int, now time.Time) {
	for ; i < len(r.Waves) && len(r.Waves[i].Targets) == 0; i++ {
		r.Waves[i].Phase, r.Waves[i].Message = flotillav1.WavePhase_WAVE_PHASE_SKIPPED, "nothing in it changed"
	}
	r.UpdatedAt = timestamppb.New(now)
	if i >= len(r.Waves) {
		r.Current = int32(len(r.Waves)) - 1
		r.Phase, r.Message, r.FinishedAt = flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, "every wave passed", timestamppb.New(now)
		return
	}
	r.Current = int32(i)
	w := r.Waves[i]
	w.StartedAt = timestamppb.New(now)
	if w.GetMaxUpdate() == 0 && w.GetStartedBy() == "" {
		w.Phase, w.Message = flotillav1.WavePhase_WAVE_PHASE_WAITING, "released only when promoted (flotilla fleet promote)"
		r.Phase, r.Message = flotillav1.FleetPhase_FLEET_PHASE_PAUSED, fmt.Sprintf("wave %d waits for an operator", i)
		return
	}
	w.Phase, w.Message = flotillav1.WavePhase_WAVE_PHASE_PROGRESSING, ""
	r.Phase, r.Message = flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING, fmt.Sprintf("wave %d is being released", i)
}

// release returns the wave of every target r lets out now: every target
// of the waves it passed, and of the current wave those released before
// plus, up to its maxUpdate, new ones while fewer are in flight (released
// and not yet Healthy). A halted rollout lets nothing new out.
func release(r *flotillav1.FleetRollout, now time.Time) map[string]int32 {
	out := map[string]int32{}
	if r.GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED {
		for _, w := range r.Waves {
			for _, t := range w.Targets {
				out[appkey.Join(t.GetCluster(), t.GetApp())] = w.GetIndex()
			}
		}
		return out
	}
	if !active(r) {
		return out
	}
	for _, w := range r.Waves[:r.Current] {
		for _, t := range w.Targets {
			out[appkey.Join(t.GetCluster(), t.GetApp())] = w.GetIndex()
		}
	}
	w := r.Waves[r.Current]
	if w.GetPhase() == flotillav1.WavePhase_WAVE_PHASE_WAITING {
		return out
	}
	inFlight := 0
	for _, t := range w.Targets {
		if t.GetReleasedAt() != nil && !t.GetHealthy() {
			inFlight++
		}
	}
	for _, t := range w.Targets {
		if t.GetReleasedAt() == nil {
			if inFlight >= int(w.GetMaxUpdate()) && w.GetStartedBy() == "" {
				t.State = fmt.Sprintf("waits: %d of maxUpdate %d in flight", inFlight, w.GetMaxUpdate())
				continue
			}
			t.ReleasedAt, t.State = timestamppb.New(now), "released"
			inFlight++
		}
		out[appkey.Join(t.GetCluster(), t.GetApp())] = w.GetIndex()
	}
	return out
}

// Observed is what the hub knows of a target now.
type Observed struct {
	// Published is the target's newest desired state.
	Published *flotillav1.DesiredState
	Status    *flotillav1.AppStatus
}

// progress moves r on with what its current wave's targets report: it
// returns whether r changed and whether targets are to be released (a new
// wave, or more of the current one as maxUpdate allows).
func progress(r *flotillav1.FleetRollout, observe func(key string) Observed, now time.Time) (changed, publish bool) {
	if !active(r) {
		return false, false
	}
	w := r.Waves[r.Current]
	if w.GetPhase() == flotillav1.WavePhase_WAVE_PHASE_WAITING {
		return false, false
	}
	before := fingerprint(r)
	healthy, unreleased, inFlight := 0, 0, 0
	var failures []string
	for _, t := range w.Targets {
		if t.GetReleasedAt() == nil {
			unreleased++
			continue
		}
		inFlight++ // until it proves Healthy below
		o := observe(appkey.Join(t.GetCluster(), t.GetApp()))
		if wave := o.Published.GetWave(); wave.GetRollout() == r.GetId() && wave.GetWave() == w.GetIndex() {
			t.HistoryId = o.Published.GetHistoryId()
		}
		t.Healthy, t.State = false, "being published"
		if t.GetHistoryId() == 0 {
			continue
		}
		st := o.Status
		if st.GetHistoryId() != t.GetHistoryId() {
			t.State = fmt.Sprintf("published as %d; the cluster is at %d", t.GetHistoryId(), st.GetHistoryId())
			continue
		}
		t.State = fmt.Sprintf("%s, %s", syncWord(st), healthWord(st))
		if a := st.GetWaveAnalysis(); a.GetRollout() == r.GetId() && a.GetWave() == w.GetIndex() && a.GetHistoryId() == t.GetHistoryId() {
			t.Analysis = a
		}
		switch {
		case st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED:
			failures = append(failures, fmt.Sprintf("%s is Degraded: %s", t.GetCluster(), st.GetMessage()))
		case st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_FAILED && st.GetRetry().GetNextAttemptAt() == nil:
			failures = append(failures, fmt.Sprintf("%s failed to sync: %s", t.GetCluster(), st.GetMessage()))
		case st.GetSyncStatus() == flotillav1.SyncStatus_SYNC_STATUS_SYNCED && st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:
			t.Healthy = true
			healthy++
			inFlight--
		}
	}
	switch {
	case len(failures) > 0:
		fail(r, w, strings.Join(failures, "; "), now)
	case unreleased > 0:
		// The wave was just entered, or targets became Healthy: maxUpdate
		// lets more out.
		publish = inFlight < int(w.GetMaxUpdate()) || w.GetStartedBy() != ""
	case healthy < len(w.Targets):
		if w.GetPhase() == flotillav1.WavePhase_WAVE_PHASE_GATED {
			// A target left Healthy during the gate: the bake starts over.
			w.Phase, w.HealthyAt, w.Message = flotillav1.WavePhase_WAVE_PHASE_PROGRESSING, nil, "a cluster left Healthy; waiting for it again"
			r.Phase, r.Message = flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING, fmt.Sprintf("wave %d waits for its clusters to be Healthy again", w.GetIndex())
		}
	default:
		if w.HealthyAt == nil {
			w.HealthyAt = timestamppb.New(now)
		}
		w.Phase = flotillav1.WavePhase_WAVE_PHASE_GATED
		if passed := gate(r, w, now); passed {
			pass(r, w, "", now)
			publish = true
		}
	}
	changed = fingerprint(r) != before
	if changed {
		r.UpdatedAt = timestamppb.New(now)
	}
	return changed, publish
}

// gate evaluates the current wave's gate; it fails r on a failed
// analysis, and otherwise says what it waits for in the wave's message.
func gate(r *flotillav1.FleetRollout, w *flotillav1.FleetWaveStatus, now time.Time) bool {
	g := w.GetGate()
	var waits []string
	if bake := time.Duration(g.GetBakeSeconds()) * time.Second; bake > 0 {
		if until := w.GetHealthyAt().AsTime().Add(bake); now.Before(until) {
			waits = append(waits, "bake time until "+until.UTC().Format(time.RFC3339))
		}
	}
	if g.GetAnalysis() != nil {
		required := requiredSuccesses(g.GetMinSuccessful(), len(w.Targets))
		var succeeded int
		var failed []string
		for _, t := range w.Targets {
			switch a := t.GetAnalysis().GetAnalysis(); a.GetPhase() {
			case "Successful":
				succeeded++
			case "Failed", "Error", "Inconclusive":
				failed = append(failed, fmt.Sprintf("%s: %s", t.GetCluster(), describeAnalysis(a)))
			}
		}
		if len(w.Targets)-len(failed) < required {
			fail(r, w, fmt.Sprintf("analysis failed (%d of %d clusters must succeed): %s", required, len(w.Targets), strings.Join(failed, "; ")), now)
			return false
		}
		if succeeded < required {
			waits = append(waits, fmt.Sprintf("analysis: %d of %d required successful", succeeded, required))
		}
	}
	if len(waits) == 0 && g.GetApproval() && w.GetApprovedBy() == "" {
		w.Message = "waits for approval (flotilla fleet promote)"
		r.Phase, r.Message = flotillav1.FleetPhase_FLEET_PHASE_PAUSED, fmt.Sprintf("wave %d waits for approval", w.GetIndex())
		return false
	}
	if len(waits) > 0 {
		w.Message = "waits for " + strings.Join(waits, ", ")
		return false
	}
	return true
}

// requiredSuccesses is minSuccessful of n: a number, a percentage
// (rounded up), or all when unset or malformed.
func requiredSuccesses(minSuccessful string, n int) int {
	if minSuccessful == "" {
		return n
	}
	v := intstr.Parse(minSuccessful)
	got, err := intstr.GetScaledValueFromIntOrPercent(&v, n, true)
	if err != nil || got < 0 {
		return n
	}
	return min(got, n)
}

func describeAnalysis(a *flotillav1.AnalysisStatus) string {
	parts := []string{a.GetPhase()}
	if a.GetMessage() != "" {
		parts = append(parts, a.GetMessage())
	}
	for _, m := range a.GetMeasurements() {
		parts = append(parts, fmt.Sprintf("%s=%s (%s)", m.GetMetric(), m.GetValue(), m.GetPhase()))
	}
	return strings.Join(parts, ", ")
}

// pass ends the current wave as succeeded and enters the next.
func pass(r *flotillav1.FleetRollout, w *flotillav1.FleetWaveStatus, message string, now time.Time) {
	w.Phase, w.Message, w.FinishedAt = flotillav1.WavePhase_WAVE_PHASE_SUCCEEDED, message, timestamppb.New(now)
	enter(r, int(w.GetIndex())+1, now)
}

// fail halts r at wave w; with auto-rollback, the clusters it updated are
// to be rolled back.
func fail(r *flotillav1.FleetRollout, w *flotillav1.FleetWaveStatus, why string, now time.Time) {
	w.Phase, w.Message, w.FinishedAt = flotillav1.WavePhase_WAVE_PHASE_FAILED, why, timestamppb.New(now)
	r.Phase, r.Message, r.FinishedAt = flotillav1.FleetPhase_FLEET_PHASE_FAILED, fmt.Sprintf("wave %d failed: %s", w.GetIndex(), why), timestamppb.New(now)
	r.Rollback = r.GetAutoRollback()
	r.UpdatedAt = timestamppb.New(now)
}

// toRollBack are the targets r updated that are still to get their
// previous desired state back.
func toRollBack(r *flotillav1.FleetRollout) []*flotillav1.FleetTarget {
	if !r.GetRollback() || r.GetRolledBack() {
		return nil
	}
	var out []*flotillav1.FleetTarget
	for _, w := range r.Waves {
		for _, t := range w.Targets {
			if t.GetHistoryId() > 0 && t.GetPreviousHistoryId() > 0 && t.GetRolledBackTo() == 0 {
				out = append(out, t)
			}
		}
	}
	return out
}

func syncWord(st *flotillav1.AppStatus) string {
	return flotillav1.EnumWord(st.GetSyncStatus().String(), "SYNC_STATUS_")
}

func healthWord(st *flotillav1.AppStatus) string {
	return flotillav1.EnumWord(st.GetHealth().String(), "HEALTH_STATUS_")
}

// fingerprint hashes r but for its update time: whether progress changed it.
func fingerprint(r *flotillav1.FleetRollout) [32]byte {
	c := proto.Clone(r).(*flotillav1.FleetRollout)
	c.UpdatedAt = nil
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	return sha256.Sum256(data)
}
