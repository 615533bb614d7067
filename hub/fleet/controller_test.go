package fleet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// memStore keeps records as the bus does: by id, with revisions, writes
// expecting the current one.
type memStore struct {
	records   map[string]*flotillav1.SignedFleetRollout
	revisions map[string]uint64
	fail      error
}

func (s *memStore) PutFleetRollout(_ context.Context, id string, r *flotillav1.SignedFleetRollout, revision uint64) (uint64, error) {
	if s.fail != nil {
		return 0, s.fail
	}
	if s.revisions[id] != revision {
		return 0, fmt.Errorf("%s at %d, not %d", id, s.revisions[id], revision)
	}
	s.revisions[id]++
	s.records[id] = r
	return s.revisions[id], nil
}

// world is a fleet the controller releases to: what is published per key
// and what the agents report.
type world struct {
	t         *testing.T
	now       time.Time
	keys      *signing.KeySet
	store     *memStore
	c         *Controller
	published map[string]*flotillav1.DesiredState
	statuses  map[string]*flotillav1.AppStatus
	events    []*flotillav1.Event
	// content is what Git says per key now.
	content map[string]string
}

const (
	staging = "staging-1.web"
	canary  = "prod-canary.web"
	eu      = "prod-eu.web"
	us      = "prod-us.web"
)

func newWorld(t *testing.T, plan *Plan) *world {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, now: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC), keys: signing.NewKeySet(key),
		store:     &memStore{records: map[string]*flotillav1.SignedFleetRollout{}, revisions: map[string]uint64{}},
		published: map[string]*flotillav1.DesiredState{}, statuses: map[string]*flotillav1.AppStatus{}, content: map[string]string{}}
	w.c = New(w.store, w.keys, func() time.Time { return w.now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.c.SetPlans(byKey(plan))
	for _, k := range []string{staging, canary, eu, us} {
		w.content[k] = "v1"
		w.published[k] = &flotillav1.DesiredState{HistoryId: 1}
		w.report(k, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	}
	return w
}

func byKey(p *Plan) map[string]*Plan {
	out := map[string]*Plan{}
	for _, w := range p.Waves {
		for _, k := range w.Keys {
			out[k] = p
		}
	}
	return out
}

// fourClusters is staging, then the canary, then the rest of production.
func fourClusters(gates ...appspec.WaveGate) *Plan {
	gate := func(i int) appspec.WaveGate {
		if i < len(gates) {
			return gates[i]
		}
		return appspec.WaveGate{}
	}
	return &Plan{Kind: KindApplication, Name: "web", AutoRollback: true, Waves: []Wave{
		{Selector: "flotilla.dev/wave=0", Keys: []string{staging}, Gate: gate(0)},
		{Selector: "flotilla.dev/wave=1", Keys: []string{canary}, Gate: gate(1)},
		{Selector: "flotilla.dev/wave=2", Keys: []string{eu, us}, Gate: gate(2)},
	}}
}

// commit changes what Git says for every key and publishes; it returns
// the keys released.
func (w *world) commit(content string) []string {
	for k := range w.content {
		w.content[k] = content
	}
	return w.publish()
}

// publish is the publisher's pass: the keys whose published content is
// not Git's are the changes; the released ones get a new history id.
func (w *world) publish() []string {
	var changes []publish.Change
	for _, k := range slices.Sorted(maps.Keys(w.content)) {
		ds := w.published[k]
		if ds.GetPin() != nil && ds.GetPin().GetGitContent() == w.content[k] {
			continue
		}
		if ds.GetPin() == nil && ds.GetArtifact().GetDigest() == w.content[k] {
			continue
		}
		changes = append(changes, publish.Change{Key: k, Content: w.content[k], Previous: ds.GetHistoryId()})
	}
	released := w.c.Release(w.t.Context(), changes)
	for k, wave := range released {
		cluster, app, _ := appkey.Split(k)
		w.published[k] = &flotillav1.DesiredState{Cluster: cluster, App: app, HistoryId: w.published[k].GetHistoryId() + 1,
			Artifact: &flotillav1.Artifact{Digest: w.content[k]}, Wave: wave}
	}
	return slices.Sorted(maps.Keys(released))
}

// report has key's agent report its published desired state synced with
// health.
func (w *world) report(key string, health flotillav1.HealthStatus) {
	prev := w.statuses[key]
	w.statuses[key] = &flotillav1.AppStatus{HistoryId: w.published[key].GetHistoryId(), SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED,
		Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, Health: health, WaveAnalysis: prev.GetWaveAnalysis()}
}

// analysed has key's agent report its wave analysis in phase.
func (w *world) analysed(key, phase string) {
	ds := w.published[key]
	st := proto.Clone(w.statuses[key]).(*flotillav1.AppStatus)
	st.WaveAnalysis = &flotillav1.WaveAnalysisStatus{Rollout: ds.GetWave().GetRollout(), Wave: ds.GetWave().GetWave(), HistoryId: ds.GetHistoryId(),
		Analysis: &flotillav1.AnalysisStatus{Phase: phase, Measurements: []*flotillav1.MeasurementStatus{{Metric: "error-rate", Value: "0.2", Phase: phase}}}}
	w.statuses[key] = st
}

// progress runs the controller's Progress and, when a publish is due,
// the publisher's pass; it returns the keys that pass released.
func (w *world) progress() []string {
	due, _ := w.c.Progress(w.t.Context(), w)
	if !due {
		return nil
	}
	return w.publish()
}

func (w *world) Observe(key string) Observed {
	return Observed{Published: w.published[key], Status: w.statuses[key]}
}

func (w *world) RollBack(_ context.Context, cluster, app string, to uint64, reason string) (uint64, error) {
	key := appkey.Join(cluster, app)
	prev := w.published[key]
	w.published[key] = &flotillav1.DesiredState{Cluster: cluster, App: app, HistoryId: prev.GetHistoryId() + 1,
		Artifact: &flotillav1.Artifact{Digest: "v1"}, Pin: &flotillav1.Pin{RolledBackTo: to, GitContent: w.content[key], Reason: reason}}
	return w.published[key].GetHistoryId(), nil
}

func (w *world) Event(_ context.Context, ev *flotillav1.Event) { w.events = append(w.events, ev) }

func (w *world) rollout() *flotillav1.FleetRollout {
	r, err := w.c.Get("web")
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) wantReleased(got []string, want ...string) {
	w.t.Helper()
	if !slices.Equal(got, want) {
		w.t.Fatalf("released %v, want %v", got, want)
	}
}

func (w *world) wantPhase(want flotillav1.FleetPhase, wave int32) {
	w.t.Helper()
	r := w.rollout()
	if r.GetPhase() != want || r.GetCurrent() != wave {
		w.t.Fatalf("rollout %s at wave %d (%s), want %s at wave %d", r.GetPhase(), r.GetCurrent(), r.GetMessage(), want, wave)
	}
}

func TestGoodVersionPassesEveryWaveInOrder(t *testing.T) {
	w := newWorld(t, fourClusters())
	w.wantReleased(w.commit("v2"), staging)
	w.wantReleased(w.publish()) // a pass with nothing new releases nothing more
	w.wantReleased(w.progress())
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING)
	w.wantReleased(w.progress())
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), canary)
	if got := w.published[staging].GetHistoryId(); got != 2 {
		t.Fatalf("staging republished: history %d", got)
	}
	w.report(canary, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), eu, us)
	w.report(eu, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress())
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING, 2)
	w.report(us, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.progress()
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, 2)
	for _, k := range []string{staging, canary, eu, us} {
		if ds := w.published[k]; ds.GetArtifact().GetDigest() != "v2" || ds.GetHistoryId() != 2 {
			t.Errorf("%s: %v", k, ds)
		}
	}
}

func TestMaxUpdateReleasesAFewAtATime(t *testing.T) {
	half := intstr.FromString("50%")
	plan := &Plan{Kind: KindApplication, Name: "web", Waves: []Wave{{Selector: "all", Keys: []string{canary, eu, staging, us}, MaxUpdate: &half}}}
	w := newWorld(t, plan)
	w.wantReleased(w.commit("v2"), canary, eu)
	w.report(canary, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), staging)
	w.report(eu, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), us)
	w.report(us, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.progress()
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, 0)
}

func TestFailedAnalysisHaltsAndRollsBack(t *testing.T) {
	analysis := &appspec.WaveAnalysis{Templates: []appspec.WaveTemplateRef{{TemplateName: "error-rate"}}}
	w := newWorld(t, fourClusters(appspec.WaveGate{Analysis: analysis}, appspec.WaveGate{Analysis: analysis}, appspec.WaveGate{Analysis: analysis}))
	w.wantReleased(w.commit("v2"), staging)
	if a := w.published[staging].GetWave().GetAnalysis(); len(a.GetTemplates()) != 1 || a.GetTemplates()[0].GetTemplateName() != "error-rate" {
		t.Fatalf("staging's desired state asks for analysis %v", a)
	}
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress()) // healthy, analysis not in yet
	w.analysed(staging, "Running")
	w.wantReleased(w.progress())
	w.analysed(staging, "Successful")
	w.wantReleased(w.progress(), canary)
	w.report(canary, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.analysed(canary, "Failed")
	w.wantReleased(w.progress())
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_FAILED, 1)
	r := w.rollout()
	if !strings.Contains(r.GetMessage(), "prod-canary: Failed") || !strings.Contains(r.GetMessage(), "error-rate=0.2") {
		t.Errorf("message %q does not say which cluster failed and what it measured", r.GetMessage())
	}
	for _, k := range []string{staging, canary} {
		pin := w.published[k].GetPin()
		if pin.GetRolledBackTo() != 1 || !strings.Contains(pin.GetReason(), "wave 1 failed") {
			t.Errorf("%s not rolled back to 1 with the reason: %v", k, w.published[k])
		}
	}
	// Later passes release nothing: prod-eu and prod-us never see v2.
	w.wantReleased(w.publish())
	w.wantReleased(w.progress())
	for _, k := range []string{eu, us} {
		if got := w.published[k].GetArtifact().GetDigest(); got == "v2" {
			t.Errorf("%s got the failed version", k)
		}
	}
	if !w.rollout().GetRolledBack() {
		t.Error("the rollout does not record the rollback")
	}
}

func TestApprovalAndBakeTime(t *testing.T) {
	w := newWorld(t, fourClusters(appspec.WaveGate{BakeTime: 2 * time.Minute}, appspec.WaveGate{Approval: true}))
	w.commit("v2")
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress())
	if _, next := w.c.Progress(t.Context(), w); !next.Equal(w.now.Add(2 * time.Minute)) {
		t.Fatalf("next look at %v, want the bake's end", next)
	}
	w.now = w.now.Add(2*time.Minute - time.Second)
	w.wantReleased(w.progress())
	w.now = w.now.Add(time.Second)
	w.wantReleased(w.progress(), canary)
	w.report(canary, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress())
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_PAUSED, 1)
	two := int32(2)
	if _, err := w.c.Promote(t.Context(), "web", &two, "oncall"); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("promote of wave 2: %v", err)
	}
	if _, err := w.c.Promote(t.Context(), "web", nil, "oncall"); err != nil {
		t.Fatal(err)
	}
	// The next Progress releases the wave the promote entered.
	w.wantReleased(w.progress(), eu, us)
	if got := w.rollout().GetWaves()[1].GetApprovedBy(); got != "oncall" {
		t.Errorf("approved by %q", got)
	}
}

func TestNewerCommitSupersedes(t *testing.T) {
	w := newWorld(t, fourClusters())
	w.commit("v2")
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), canary)
	first := w.rollout().GetId()
	w.wantReleased(w.commit("v3"), staging)
	r := w.rollout()
	if r.GetId() == first || r.GetCurrent() != 0 {
		t.Fatalf("rollout %s at wave %d, want a new one at wave 0", r.GetId(), r.GetCurrent())
	}
	if got := w.published[canary].GetArtifact().GetDigest(); got != "v2" {
		t.Errorf("canary has %s: the new rollout released it before its wave", got)
	}
}

// TestListHoldsTheLatestOfEachGroup: List is what the dashboard's stream
// reads; a newer commit's rollout replaces the older one, and what it
// returns is the caller's to keep.
func TestListHoldsTheLatestOfEachGroup(t *testing.T) {
	w := newWorld(t, fourClusters())
	if got := w.c.List(); len(got) != 0 {
		t.Fatalf("before any commit: %d rollouts", len(got))
	}
	w.commit("v2")
	w.commit("v3")
	list := w.c.List()
	if len(list) != 1 || !proto.Equal(list[0], w.rollout()) {
		t.Fatalf("List %v, want only %v", list, w.rollout())
	}
	list[0].Phase = flotillav1.FleetPhase_FLEET_PHASE_ABORTED
	if w.rollout().GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_ABORTED {
		t.Error("changing what List returned changed the controller's rollout")
	}
}

func TestRestartedControllerContinuesFromItsRecord(t *testing.T) {
	w := newWorld(t, fourClusters())
	w.commit("v2")
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), canary)
	// Another replica takes over: it knows the records it read back.
	w.c = New(w.store, w.keys, func() time.Time { return w.now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.c.SetPlans(byKey(fourClusters()))
	for id, r := range w.store.records {
		w.c.Observe(id, r, w.store.revisions[id])
	}
	w.wantReleased(w.publish())
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING, 1)
	w.report(canary, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), eu, us)
}

func TestForgedRecordIsIgnored(t *testing.T) {
	w := newWorld(t, fourClusters())
	w.commit("v2")
	_, other, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := w.rollout()
	forged.Current = 2
	signed, err := signing.NewSigner(other).SignFleetRollout(forged)
	if err != nil {
		t.Fatal(err)
	}
	w.c.Observe("Application/web", signed, 99)
	if got := w.rollout().GetCurrent(); got != 0 {
		t.Fatalf("a record another key signed moved the rollout to wave %d", got)
	}
}

func TestManualWaveWaitsForPromote(t *testing.T) {
	plan := fourClusters()
	plan.Waves[1].Manual = true // maxUpdate 0
	w := newWorld(t, plan)
	w.commit("v2")
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress())
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_PAUSED, 1)
	if _, err := w.c.Promote(t.Context(), "web", nil, "oncall"); err != nil {
		t.Fatal(err)
	}
	w.wantReleased(w.progress(), canary)
}

func TestUnwrittenRecordHoldsTheChanges(t *testing.T) {
	w := newWorld(t, fourClusters())
	w.store.fail = errors.New("NATS away")
	w.wantReleased(w.commit("v2"))
	w.store.fail = nil
	w.wantReleased(w.publish(), staging)
}

func TestAbortWithRollback(t *testing.T) {
	w := newWorld(t, fourClusters())
	w.commit("v2")
	w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.progress()
	if _, err := w.c.Abort(t.Context(), "web", true, "oncall"); err != nil {
		t.Fatal(err)
	}
	w.progress()
	w.wantPhase(flotillav1.FleetPhase_FLEET_PHASE_ABORTED, 1)
	if w.published[staging].GetPin().GetRolledBackTo() != 1 {
		t.Errorf("staging not rolled back: %v", w.published[staging])
	}
	if _, err := w.c.Abort(t.Context(), "web", false, "oncall"); !errors.Is(err, ErrNotActive) {
		t.Errorf("second abort: %v", err)
	}
}

// TestSuccessPolicy: with minSuccessful 50 %, one of production's two
// clusters may fail its analysis; two may not.
func TestSuccessPolicy(t *testing.T) {
	half := intstr.FromString("50%")
	analysis := &appspec.WaveAnalysis{Templates: []appspec.WaveTemplateRef{{TemplateName: "error-rate"}}}
	for _, tc := range []struct {
		name   string
		failed []string
		want   flotillav1.FleetPhase
	}{
		{"one of two fails", []string{eu}, flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED},
		{"both fail", []string{eu, us}, flotillav1.FleetPhase_FLEET_PHASE_FAILED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, fourClusters(appspec.WaveGate{}, appspec.WaveGate{}, appspec.WaveGate{Analysis: analysis, MinSuccessful: &half}))
			w.commit("v2")
			w.report(staging, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
			w.progress()
			w.report(canary, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
			w.wantReleased(w.progress(), eu, us)
			for _, k := range []string{eu, us} {
				w.report(k, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
				phase := "Successful"
				if slices.Contains(tc.failed, k) {
					phase = "Failed"
				}
				w.analysed(k, phase)
			}
			w.progress()
			w.wantPhase(tc.want, 2)
		})
	}
}
