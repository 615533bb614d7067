package reconcile

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flotilla-dev/flotilla/agent/rollouts"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

var analysisRuns = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}

// metricsToken is the Secret value the web metric authenticates with; it
// must never show in a status, an event or the run.
const metricsToken = "s3cret-metrics-token"

// errorRateCheck is the endpoint a wave's web metric reads,
// {"errorRate": <rate>}, for callers with the metrics token only. From
// request holdFrom on (0: never) it holds each request until release is
// called or the caller gives up, telling held.
type errorRateCheck struct {
	srv      *httptest.Server
	rate     atomic.Value // float64
	calls    atomic.Int64
	holdFrom int64
	held     chan struct{}
	release  func()
	released chan struct{}
}

func startErrorRateCheck(t *testing.T, rate float64, holdFrom int64) *errorRateCheck {
	c := &errorRateCheck{holdFrom: holdFrom, held: make(chan struct{}, 16), released: make(chan struct{})}
	c.release = sync.OnceFunc(func() { close(c.released) })
	c.rate.Store(rate)
	c.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n := c.calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+metricsToken {
			http.Error(rw, "unauthorized", http.StatusUnauthorized)
			return
		}
		if c.holdFrom > 0 && n >= c.holdFrom {
			c.held <- struct{}{}
			select {
			case <-c.released:
			case <-r.Context().Done():
				return
			}
		}
		_ = json.NewEncoder(rw).Encode(map[string]any{"errorRate": c.rate.Load()})
	}))
	t.Cleanup(c.release)
	t.Cleanup(c.srv.Close)
	return c
}

// waveApp is an application whose destination namespace (its name) holds
// the metrics token's Secret, outside the application, and whose desired
// state carries an AnalysisTemplate reading check's error rate every
// 200 ms, count times, beside a ConfigMap.
func waveApp(t *testing.T, e *syncerEnv, name string, count int) map[string]string {
	t.Helper()
	e.cluster.CreateNamespace(t, name)
	e.cluster.CreateAll(t, name, "apiVersion: v1\nkind: Secret\nmetadata: {name: metrics}\nstringData: {token: "+metricsToken+"}\n")
	return map[string]string{
		"settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
		"template.yaml": fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: url}, {name: token}]
  metrics:
    - name: error-rate
      interval: 200ms
      count: %d
      successCondition: result < 0.05
      provider:
        web:
          url: "{{args.url}}"
          jsonPath: "{$.errorRate}"
          headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
`, count),
	}
}

// waveOf is wave 1 of a fleet rollout whose analysis is the template
// waveApp writes, against check, the token read from the Secret.
func waveOf(check *errorRateCheck) *flotillav1.FleetWave {
	return &flotillav1.FleetWave{Rollout: "Application/api@c2", Wave: 1, Analysis: &flotillav1.WaveAnalysis{
		Templates: []*flotillav1.AnalysisTemplateRef{{TemplateName: "error-rate"}},
		Args: []*flotillav1.AnalysisArg{
			{Name: "url", Value: check.srv.URL},
			{Name: "token", SecretName: "metrics", SecretKey: "token"},
		},
	}}
}

// waitWaveAnalysis waits until app's status of history id reports its wave
// analysis as ok says.
func (e *syncerEnv) waitWaveAnalysis(t *testing.T, app string, id uint64, ok func(*flotillav1.AnalysisStatus) error) *flotillav1.AppStatus {
	t.Helper()
	var st *flotillav1.AppStatus
	testenv.Eventually(t, time.Minute, func() error {
		st = e.reporter.status(app)
		if st.GetHistoryId() != id || st.GetWaveAnalysis() == nil {
			return fmt.Errorf("status of %s: history %d, health %s, wave analysis %v", app, st.GetHistoryId(), st.GetHealth(), st.GetWaveAnalysis())
		}
		return ok(st.GetWaveAnalysis().GetAnalysis())
	})
	return st
}

func phaseIs(phase string) func(*flotillav1.AnalysisStatus) error {
	return func(a *flotillav1.AnalysisStatus) error {
		if a.GetPhase() != phase {
			return fmt.Errorf("analysis %s %s (%s), want %s", a.GetName(), a.GetPhase(), a.GetMessage(), phase)
		}
		return nil
	}
}

// waveRuns are the wave AnalysisRuns of app in namespace.
func (e *syncerEnv) waveRuns(t *testing.T, namespace, app string) []unstructured.Unstructured {
	t.Helper()
	list, err := e.cluster.Dynamic.Resource(analysisRuns).Namespace(namespace).List(t.Context(), metav1.ListOptions{LabelSelector: rollouts.WaveAnalysisLabel + "=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// lastMeasurement is the latest measurement of the run's only metric
// with its counters, as the status reports them (time left out).
func lastMeasurement(a *flotillav1.AnalysisStatus) *flotillav1.MeasurementStatus {
	if len(a.GetMeasurements()) != 1 {
		return nil
	}
	m := a.GetMeasurements()[0]
	return &flotillav1.MeasurementStatus{Metric: m.GetMetric(), Phase: m.GetPhase(), Value: m.GetValue(), Message: m.GetMessage(),
		Count: m.GetCount(), Failed: m.GetFailed(), Errors: m.GetErrors()}
}

// noSecret fails the test if the metrics token shows in anything the
// agent reported of app or wrote into its runs.
func (e *syncerEnv) noSecret(t *testing.T, namespace, app string) {
	t.Helper()
	e.reporter.mu.Lock()
	reported := []any{e.reporter.statuses[app]}
	for _, ev := range e.reporter.events {
		if ev.GetApp() == app {
			reported = append(reported, ev)
		}
	}
	e.reporter.mu.Unlock()
	for _, run := range e.waveRuns(t, namespace, app) {
		reported = append(reported, run.Object)
	}
	data, err := json.Marshal(reported)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), metricsToken) {
		t.Errorf("the metrics token shows in what was reported or written: %s", data)
	}
}

// TestWaveAnalysis runs the analysis a fleet rollout's wave asks for, in
// the application's namespace, once the application synced its desired
// state and is Healthy, with a web metric against a server of the test,
// and follows it in the application's status and events.
func TestWaveAnalysis(t *testing.T) {
	e := startSyncer(t)
	if _, err := rollouts.EnsureCRDs(t.Context(), e.cluster.Dynamic); err != nil {
		t.Fatal(err)
	}
	policy := &flotillav1.SyncPolicy{Automated: &flotillav1.Automated{Prune: true}}

	t.Run("a healthy app's analysis succeeds, and is reported with its measurement", func(t *testing.T) {
		const app = "wave-ok"
		check := startErrorRateCheck(t, 0.01, 0)
		files := waveApp(t, e, app, 3)
		wave := waveOf(check)
		id := e.offerWave(t, app, app, files, policy, wave)

		st := e.waitWaveAnalysis(t, app, id, phaseIs("Successful"))
		if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY || st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED {
			t.Errorf("app %s %s, want Synced and Healthy", st.GetSyncStatus(), st.GetHealth())
		}
		wa := st.GetWaveAnalysis()
		if wa.GetRollout() != wave.GetRollout() || wa.GetWave() != 1 || wa.GetHistoryId() != id {
			t.Errorf("wave analysis of %q wave %d history %d, want %q wave 1 history %d", wa.GetRollout(), wa.GetWave(), wa.GetHistoryId(), wave.GetRollout(), id)
		}
		want := &flotillav1.MeasurementStatus{Metric: "error-rate", Phase: "Successful", Value: "0.01", Count: 3}
		if diff := cmp.Diff(want, lastMeasurement(wa.GetAnalysis()), protocmp.Transform()); diff != "" {
			t.Errorf("measurement (-want +got):\n%s", diff)
		}
		if wa.GetAnalysis().GetMeasurements()[0].GetFinishedAt() == nil {
			t.Error("the measurement has no time")
		}

		// The run is the one AnalysisRun of the wave, in the destination
		// namespace, recognisable by its label and not the application's
		// object: it has no ownership label, and no resource of the status
		// is an AnalysisRun.
		runs := e.waveRuns(t, app, app)
		if len(runs) != 1 || runs[0].GetName() != wa.GetAnalysis().GetName() {
			t.Fatalf("wave runs %v, want the one the status names, %s", names(runs), wa.GetAnalysis().GetName())
		}
		if owner, ok := runs[0].GetLabels()[AppLabel]; ok {
			t.Errorf("the run carries %s=%s", AppLabel, owner)
		}
		if phase := testenv.Field(&runs[0], "status", "phase"); phase != "Successful" {
			t.Errorf("run's own phase %q, want Successful", phase)
		}
		for _, r := range st.GetResources() {
			if r.GetKind() == "AnalysisRun" {
				t.Errorf("the status lists %s/%s as the app's", r.GetKind(), r.GetName())
			}
		}
		ev := e.waitEvent(t, app, flotillav1.ReasonWaveAnalysisSucceeded, id)
		if ev.GetType() != flotillav1.EventType_EVENT_TYPE_NORMAL || !strings.Contains(ev.GetMessage(), "error-rate=0.01 Successful (0 failed of 3)") {
			t.Errorf("event %v, want a normal one with the measurement", ev)
		}
		if ev := e.eventOf(app, flotillav1.ReasonWaveAnalysisProgressed, id); ev == nil {
			t.Error("no WaveAnalysisProgressed event while it ran")
		}
		e.noSecret(t, app, app)

		// A desired state outside any wave reports no wave analysis, and
		// the earlier run is kept as it ended.
		next := e.offer(t, app, app, files, policy)
		st = e.waitStatus(t, app, next)
		testenv.Eventually(t, time.Minute, func() error {
			if st = e.reporter.status(app); st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
				return fmt.Errorf("health %s", st.GetHealth())
			}
			return nil
		})
		if st.GetWaveAnalysis() != nil {
			t.Errorf("history %d reports wave analysis %v, want none", next, st.GetWaveAnalysis())
		}
		if runs := e.waveRuns(t, app, app); len(runs) != 1 || testenv.Field(&runs[0], "status", "phase") != "Successful" {
			t.Errorf("wave runs %v after the next desired state, want the Successful one kept", names(runs))
		}
	})

	t.Run("a failing metric ends it Failed with the measured value, and it is not run again", func(t *testing.T) {
		const app = "wave-failing"
		check := startErrorRateCheck(t, 0.07, 0)
		id := e.offerWave(t, app, app, waveApp(t, e, app, 3), policy, waveOf(check))

		st := e.waitWaveAnalysis(t, app, id, phaseIs("Failed"))
		a := st.GetWaveAnalysis().GetAnalysis()
		want := &flotillav1.MeasurementStatus{Metric: "error-rate", Phase: "Failed", Value: "0.07", Count: 1, Failed: 1}
		if diff := cmp.Diff(want, lastMeasurement(a), protocmp.Transform()); diff != "" {
			t.Errorf("measurement (-want +got):\n%s", diff)
		}
		if !strings.Contains(a.GetMessage(), `metric "error-rate" assessed Failed due to failed (1) > failureLimit (0)`) {
			t.Errorf("message %q", a.GetMessage())
		}
		if ev := e.waitEvent(t, app, flotillav1.ReasonWaveAnalysisFailed, id); ev.GetType() != flotillav1.EventType_EVENT_TYPE_WARNING || !strings.Contains(ev.GetMessage(), "error-rate=0.07 Failed (1 failed of 1)") {
			t.Errorf("event %v, want a warning with the measurement", ev)
		}

		// An operator's sync of the same desired state reports the run as
		// it ended: a completed run is never started again.
		calls, uid := check.calls.Load(), e.waveRuns(t, app, app)[0].GetUID()
		if _, err := e.syncer.SyncNow(t.Context(), app); err != nil {
			t.Fatal(err)
		}
		e.waitWaveAnalysis(t, app, id, phaseIs("Failed"))
		if runs := e.waveRuns(t, app, app); len(runs) != 1 || runs[0].GetUID() != uid {
			t.Errorf("wave runs %v after a sync, want the one failed run", names(runs))
		}
		if now := check.calls.Load(); now != calls {
			t.Errorf("%d more measurements after the run failed", now-calls)
		}
		e.noSecret(t, app, app)
	})

	t.Run("a restarted agent continues the run it finds", func(t *testing.T) {
		const app = "wave-restart"
		// The second measurement hangs until the agent taking it is gone.
		check := startErrorRateCheck(t, 0.01, 2)
		files, wave := waveApp(t, e, app, 3), waveOf(check)
		id := e.offerWave(t, app, app, files, policy, wave)
		e.waitWaveAnalysis(t, app, id, func(a *flotillav1.AnalysisStatus) error {
			if m := lastMeasurement(a); a.GetPhase() != "Running" || m.GetCount() != 1 {
				return fmt.Errorf("analysis %s with %v, want Running after one measurement", a.GetPhase(), m)
			}
			return nil
		})
		select {
		case <-check.held:
		case <-time.After(time.Minute):
			t.Fatal("the second measurement was not taken")
		}
		before := e.waveRuns(t, app, app)
		if len(before) != 1 {
			t.Fatalf("wave runs %v, want one", names(before))
		}

		// The agent stops mid-measurement; the next one starts and gets
		// the same desired state again, as catch-up delivers it.
		e.restart()
		check.release()
		e.history[app]--
		e.offerWave(t, app, app, files, policy, wave)

		st := e.waitWaveAnalysis(t, app, id, phaseIs("Successful"))
		after := e.waveRuns(t, app, app)
		if len(after) != 1 || after[0].GetUID() != before[0].GetUID() {
			t.Fatalf("wave runs %v after the restart, want the same run continued", names(after))
		}
		if started, was := testenv.Field(&after[0], "status", "startedAt"), testenv.Field(&before[0], "status", "startedAt"); started != was {
			t.Errorf("run started at %s, was %s: started afresh", started, was)
		}
		// Three measurements in all: the one cut short by the stop was not
		// recorded, as an error or otherwise, and was taken again.
		want := &flotillav1.MeasurementStatus{Metric: "error-rate", Phase: "Successful", Value: "0.01", Count: 3}
		if diff := cmp.Diff(want, lastMeasurement(st.GetWaveAnalysis().GetAnalysis()), protocmp.Transform()); diff != "" {
			t.Errorf("measurement (-want +got):\n%s", diff)
		}
	})

	t.Run("an analysis that cannot start says why", func(t *testing.T) {
		check := startErrorRateCheck(t, 0.01, 0)
		// A template no application brought (yet): held Pending, no run.
		const waiting = "wave-no-template"
		wave := waveOf(check)
		wave.Analysis.Templates[0].TemplateName = "later"
		id := e.offerWave(t, waiting, waiting, waveApp(t, e, waiting, 3), policy, wave)
		st := e.waitWaveAnalysis(t, waiting, id, phaseIs("Pending"))
		if msg := st.GetWaveAnalysis().GetAnalysis().GetMessage(); !strings.Contains(msg, `waiting for AnalysisTemplate "later"`) {
			t.Errorf("message %q, want it waiting for the template", msg)
		}
		if runs := e.waveRuns(t, waiting, waiting); len(runs) != 0 {
			t.Errorf("wave runs %v, want none before the template exists", names(runs))
		}
		// An arg without a value: the run ends as Error, saying so.
		const broken = "wave-no-url"
		wave = waveOf(check)
		wave.Analysis.Args = wave.Analysis.Args[1:]
		id = e.offerWave(t, broken, broken, waveApp(t, e, broken, 3), policy, wave)
		st = e.waitWaveAnalysis(t, broken, id, phaseIs("Error"))
		if msg := st.GetWaveAnalysis().GetAnalysis().GetMessage(); !strings.Contains(msg, `arg "url" has no value`) {
			t.Errorf("message %q, want the missing arg named", msg)
		}
		if runs := e.waveRuns(t, broken, broken); len(runs) != 1 || testenv.Field(&runs[0], "status", "phase") != "Error" {
			t.Errorf("wave runs %v, want one ended as Error", names(runs))
		}
		if ev := e.waitEvent(t, broken, flotillav1.ReasonWaveAnalysisFailed, id); ev.GetType() != flotillav1.EventType_EVENT_TYPE_WARNING {
			t.Errorf("event %v, want a warning", ev)
		}
	})

	t.Run("a newer desired state ends the older one's run", func(t *testing.T) {
		const app = "wave-superseded"
		check := startErrorRateCheck(t, 0.01, 0)
		files := waveApp(t, e, app, 1000)
		id := e.offerWave(t, app, app, files, policy, waveOf(check))
		e.waitWaveAnalysis(t, app, id, phaseIs("Running"))

		next := e.offer(t, app, app, files, policy)
		e.waitStatus(t, app, next)
		testenv.Eventually(t, time.Minute, func() error {
			runs := e.waveRuns(t, app, app)
			if len(runs) != 1 {
				return fmt.Errorf("wave runs %v, want one", names(runs))
			}
			if phase, msg := testenv.Field(&runs[0], "status", "phase"), testenv.Field(&runs[0], "status", "message"); phase == "Running" ||
				!strings.HasPrefix(msg, "a newer desired state took over") {
				return fmt.Errorf("old run %s: %s", phase, msg)
			}
			return nil
		})
		calls := check.calls.Load()
		e.waitStatus(t, app, e.offer(t, app, app, files, policy))
		if now := check.calls.Load(); now != calls {
			t.Errorf("%d measurements after the run ended", now-calls)
		}
	})
}

// waitEvent waits for the event of app's history id with reason.
func (e *syncerEnv) waitEvent(t *testing.T, app, reason string, id uint64) *flotillav1.Event {
	t.Helper()
	var ev *flotillav1.Event
	testenv.Eventually(t, time.Minute, func() error {
		if ev = e.eventOf(app, reason, id); ev == nil {
			return fmt.Errorf("no %s event of history %d yet", reason, id)
		}
		return nil
	})
	return ev
}

func names(objs []unstructured.Unstructured) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetNamespace() + "/" + o.GetName()
	}
	return out
}
