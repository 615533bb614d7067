package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/agent/apply"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

func TestMayDelete(t *testing.T) {
	labelled := func(app string) *unstructured.Unstructured {
		obj := apply.ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "settings"}.Object()
		if app != "" {
			obj.SetLabels(map[string]string{AppLabel: app})
		}
		return obj
	}
	timeout := errors.New("etcdserver: request timed out")
	for _, tc := range []struct {
		name     string
		live     *unstructured.Unstructured
		readErr  error
		keep     string
		wantedBy string
		wantErr  error
		want     verdict
		// asks: the other applications' desired states are consulted.
		asks bool
	}{
		{name: "an object of its own that left Git is deleted", live: labelled("cart"), asks: true, want: verdict{allowed: true}},
		{name: "one that lost its label is still its own", live: labelled(""), asks: true, want: verdict{allowed: true}},
		{name: "one already gone is deleted (nothing to lose)", want: verdict{allowed: true}},
		{name: "one another app took over is left to it", live: labelled("checkout"), want: verdict{leftTo: "checkout", taken: true}},
		{name: "one another app took over is left to it even with prune off", live: labelled("checkout"), keep: "prune is off",
			want: verdict{leftTo: "checkout", taken: true}},
		{name: "Prune=false keeps one of its own", live: labelled("cart"), keep: "Prune=false", want: verdict{kept: "Prune=false"}},
		{name: "one another app's desired state wants is left to it before that app applied it", live: labelled("cart"),
			wantedBy: "checkout", asks: true, want: verdict{leftTo: "checkout"}},
		{name: "a failed read fails closed", readErr: timeout, want: verdict{err: timeout}},
		{name: "a failed read with prune off keeps it, as prune off does", readErr: timeout, keep: "prune is off",
			want: verdict{kept: "prune is off"}},
		{name: "not knowing what the other apps want fails closed", live: labelled("cart"), wantErr: timeout, asks: true,
			want: verdict{err: timeout}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			got := mayDelete("cart", tc.live, tc.readErr, tc.keep, func() (string, error) {
				asked = true
				return tc.wantedBy, tc.wantErr
			})
			if asked != tc.asks {
				t.Errorf("asked what other apps want: %t, want %t", asked, tc.asks)
			}
			if !errors.Is(got.err, tc.want.err) {
				t.Errorf("err = %v, want %v", got.err, tc.want.err)
			}
			got.err, tc.want.err = nil, nil
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(verdict{})); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

// scriptedCluster is a Cluster whose reads and deletes a test scripts;
// the other verbs are not called.
type scriptedCluster struct {
	Cluster
	live    map[string]*unstructured.Unstructured
	readErr error
	// deleteAll answers DeleteAll; deletes records what it was asked.
	deleteAll func(refs []apply.ObjectRef) (*apply.ChangeSet, error)
	deletes   [][]apply.ObjectRef
}

func (c *scriptedCluster) Live(_ context.Context, objs []*unstructured.Unstructured) (map[string]*unstructured.Unstructured, error) {
	if c.readErr != nil {
		return nil, c.readErr
	}
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if l := c.live[apply.RefOf(o).Key()]; l != nil {
			out[apply.RefOf(o).Key()] = l.DeepCopy()
		}
	}
	return out, nil
}

func (c *scriptedCluster) DeleteAll(_ context.Context, refs []apply.ObjectRef, _ metav1.DeletionPropagation, _ ...apply.DeleteOption) (*apply.ChangeSet, error) {
	c.deletes = append(c.deletes, refs)
	return c.deleteAll(refs)
}

func scriptedSyncer(c *scriptedCluster) *Syncer {
	return New(Options{Cluster: "test"}, slog.New(slog.NewTextHandler(io.Discard, nil)), Dependencies{Cluster: c})
}

func TestDeleteOwnedFailsClosedWhenTheReadFails(t *testing.T) {
	refs := []apply.ObjectRef{
		{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "settings"},
		{Version: "v1", Kind: "Service", Namespace: "shop", Name: "cart"},
	}
	c := &scriptedCluster{readErr: errors.New("etcdserver: request timed out")}
	s := scriptedSyncer(c)

	d, err := s.deleteOwned(t.Context(), "cart", "pruned", refs, func(*unstructured.Unstructured) string { return "" }, metav1.DeletePropagationBackground)

	if err == nil || !strings.Contains(err.Error(), "not pruned: reading it to check its owner failed: etcdserver: request timed out") {
		t.Errorf("error = %v, want the failed read", err)
	}
	if strings.Count(err.Error(), "request timed out") != 1 {
		t.Errorf("error tells one cause more than once: %v", err)
	}
	if len(c.deletes) > 0 {
		t.Errorf("deleted %v after a failed read", c.deletes)
	}
	if diff := cmp.Diff(refs, d.kept); diff != "" {
		t.Errorf("kept in the inventory (-want +got):\n%s", diff)
	}
	for _, ch := range d.changes {
		if ch.Action != apply.Failed || !strings.Contains(ch.Message, "not pruned") {
			t.Errorf("change of %s: %s %q, want failed, not pruned", ch.Ref, ch.Action, ch.Message)
		}
	}
}

func TestDeleteOwnedDecidesAgainWhatChangedSinceTheRead(t *testing.T) {
	ref := apply.ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "settings"}
	obj := ref.Object()
	obj.SetLabels(map[string]string{AppLabel: "cart"})
	c := &scriptedCluster{live: map[string]*unstructured.Unstructured{ref.Key(): obj}}
	c.deleteAll = func(refs []apply.ObjectRef) (*apply.ChangeSet, error) {
		// Between the read and the delete, checkout applied the object.
		obj.SetLabels(map[string]string{AppLabel: "checkout"})
		oe := &apply.ObjectError{Ref: ref, Action: "delete", Err: fmt.Errorf("%w: precondition failed", apply.ErrChanged)}
		return &apply.ChangeSet{Changes: []apply.Change{{Ref: ref, Action: apply.Failed, Message: oe.Error()}}}, errors.Join(oe)
	}
	s := scriptedSyncer(c)

	d, err := s.deleteOwned(t.Context(), "cart", "pruned", []apply.ObjectRef{ref}, func(*unstructured.Unstructured) string { return "" }, metav1.DeletePropagationBackground)

	if err != nil {
		t.Fatalf("error = %v; an object taken over between read and delete is no failure", err)
	}
	if len(c.deletes) != 1 {
		t.Errorf("deletes = %v, want the one that found the object changed", c.deletes)
	}
	want := deletions{changes: []apply.Change{{Ref: ref, Action: apply.Released,
		Message: "not pruned: left to app checkout, which owns it now (its flotilla.dev/app label names checkout)"}}, leftTo: []string{"checkout"}}
	if diff := cmp.Diff(want, d, cmp.AllowUnexported(deletions{})); diff != "" {
		t.Errorf("deletions (-want +got):\n%s", diff)
	}
}

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// configMaps is a manifest of one ConfigMap per name.
func configMapFiles(names ...string) map[string]string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {k: v}\n", n)
	}
	return map[string]string{"manifests.yaml": b.String()}
}

// offerRemoval hands the syncer app's removal from Git, with cascade.
func (e *syncerEnv) offerRemoval(t *testing.T, app string) uint64 {
	e.history[app]++
	e.syncer.Offer(e.lifetime, Desired{State: &flotillav1.DesiredState{SchemaVersion: 1, Cluster: "test", App: app,
		HistoryId: e.history[app], Deletion: &flotillav1.Deletion{Cascade: true}}})
	return e.history[app]
}

// configMap is the live ConfigMap ns/name, or nil when there is none.
func (e *syncerEnv) configMap(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	obj, err := e.cluster.Dynamic.Resource(configMaps).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return obj
}

// uidOf is the UID of the live ConfigMap ns/name, failing the test when
// it is gone.
func (e *syncerEnv) uidOf(t *testing.T, ns, name string) types.UID {
	t.Helper()
	obj := e.configMap(t, ns, name)
	if obj == nil {
		t.Fatalf("ConfigMap %s/%s is gone", ns, name)
	}
	return obj.GetUID()
}

// checkSurvived fails the test unless ConfigMap ns/name is still the
// object of uid (never deleted and recreated), labelled for app.
func (e *syncerEnv) checkSurvived(t *testing.T, ns, name string, uid types.UID, app string) {
	t.Helper()
	obj := e.configMap(t, ns, name)
	switch {
	case obj == nil:
		t.Errorf("ConfigMap %s/%s was deleted", ns, name)
	case obj.GetUID() != uid:
		t.Errorf("ConfigMap %s/%s was deleted and recreated (uid %s, was %s)", ns, name, obj.GetUID(), uid)
	case obj.GetLabels()[AppLabel] != app:
		t.Errorf("ConfigMap %s/%s is labelled for %q, want %q", ns, name, obj.GetLabels()[AppLabel], app)
	}
}

// resourceOf is the status of ConfigMap name among st's resources.
func resourceOf(t *testing.T, st *flotillav1.AppStatus, name string) *flotillav1.ResourceStatus {
	t.Helper()
	i := slices.IndexFunc(st.GetResources(), func(r *flotillav1.ResourceStatus) bool { return r.GetKind() == "ConfigMap" && r.GetName() == name })
	if i < 0 {
		t.Fatalf("status of %s lists no ConfigMap %s: %v", st.GetApp(), name, st.GetResources())
	}
	return st.GetResources()[i]
}

// inventoryHas reports whether app's inventory lists ConfigMap name.
func (e *syncerEnv) inventoryHas(t *testing.T, app, name string) bool {
	t.Helper()
	inv, err := e.inventory.Load(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(inv.Objects, func(r apply.ObjectRef) bool { return r.Kind == "ConfigMap" && r.Name == name })
}

func succeeded(t *testing.T, st *flotillav1.AppStatus) *flotillav1.AppStatus {
	t.Helper()
	if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
		t.Fatalf("%s history %d: %s: %s", st.GetApp(), st.GetHistoryId(), st.GetPhase(), st.GetMessage())
	}
	return st
}

// TestOwnership moves objects between applications through the real
// apiserver: whatever syncs first, an object moved from one application to
// another in one commit is never deleted, and ends up the other's.
func TestOwnership(t *testing.T) {
	e := startSyncer(t)
	automated := &flotillav1.SyncPolicy{Automated: &flotillav1.Automated{Prune: true}}
	// start syncs app a with settings and a-only, app b with b-only, in ns.
	start := func(t *testing.T, ns, a, b string) {
		e.cluster.CreateNamespace(t, ns)
		succeeded(t, e.waitStatus(t, a, e.offer(t, a, ns, configMapFiles("settings", "a-only"), automated)))
		succeeded(t, e.waitStatus(t, b, e.offer(t, b, ns, configMapFiles("b-only"), automated)))
	}

	t.Run("moved in one commit, the app it left syncs first: it leaves the object to the other", func(t *testing.T) {
		ns, a, b := "moved-left-first", "left-first-a", "left-first-b"
		start(t, ns, a, b)
		uid := e.uidOf(t, ns, "settings")

		// b's sync of the commit waits before it renders: a syncs first.
		release := e.faults.hold(t, b)
		bMoved := e.offer(t, b, ns, configMapFiles("b-only", "settings"), automated)
		st := succeeded(t, e.waitStatus(t, a, e.offer(t, a, ns, configMapFiles("a-only"), automated)))

		if st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED || !strings.Contains(st.GetMessage(), "0 pruned, 1 left to app "+b) {
			t.Errorf("status of %s: %s: %s, want synced, 1 left to app %s", a, st.GetSyncStatus(), st.GetMessage(), b)
		}
		if r := resourceOf(t, st, "settings"); r.GetAction() != string(apply.Released) || r.GetMessage() != "not pruned: left to app "+b+", whose desired state includes it" {
			t.Errorf("settings in the status of %s: %s: %q", a, r.GetAction(), r.GetMessage())
		}
		e.checkSurvived(t, ns, "settings", uid, a)
		if !e.inventoryHas(t, a, "settings") {
			t.Errorf("%s dropped settings from its inventory before %s took it over", a, b)
		}

		release()
		succeeded(t, e.waitStatus(t, b, bMoved))
		e.checkSurvived(t, ns, "settings", uid, b)

		// a's next sync finds the object b's, and forgets it.
		if _, err := e.syncer.SyncNow(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		st = e.reporter.status(a)
		if r := resourceOf(t, st, "settings"); r.GetAction() != string(apply.Released) || !strings.Contains(r.GetMessage(), "which owns it now") {
			t.Errorf("settings in the status of %s after %s took it: %s: %q", a, b, r.GetAction(), r.GetMessage())
		}
		if e.inventoryHas(t, a, "settings") {
			t.Errorf("%s still lists settings, which %s owns", a, b)
		}
		e.checkSurvived(t, ns, "settings", uid, b)
	})

	t.Run("moved in one commit, the app it went to syncs first: it takes the object over", func(t *testing.T) {
		ns, a, b := "moved-taker-first", "taker-first-a", "taker-first-b"
		start(t, ns, a, b)
		uid := e.uidOf(t, ns, "settings")

		succeeded(t, e.waitStatus(t, b, e.offer(t, b, ns, configMapFiles("b-only", "settings"), automated)))
		e.checkSurvived(t, ns, "settings", uid, b) // server-side apply took the label over
		st := succeeded(t, e.waitStatus(t, a, e.offer(t, a, ns, configMapFiles("a-only"), automated)))

		if st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED || !strings.Contains(st.GetMessage(), "0 pruned, 1 left to app "+b) {
			t.Errorf("status of %s: %s: %s, want synced, 1 left to app %s", a, st.GetSyncStatus(), st.GetMessage(), b)
		}
		want := "not pruned: left to app " + b + ", which owns it now (its flotilla.dev/app label names " + b + ")"
		if r := resourceOf(t, st, "settings"); r.GetAction() != string(apply.Released) || r.GetMessage() != want {
			t.Errorf("settings in the status of %s: %s: %q, want released: %q", a, r.GetAction(), r.GetMessage(), want)
		}
		e.checkSurvived(t, ns, "settings", uid, b)
		if e.inventoryHas(t, a, "settings") {
			t.Errorf("%s still lists settings, which %s owns", a, b)
		}
		if e.configMap(t, ns, "a-only") == nil || e.configMap(t, ns, "b-only") == nil {
			t.Errorf("an object neither app gave up is gone")
		}
	})

	t.Run("a cascade delete leaves what another app owns or wants", func(t *testing.T) {
		ns, a, b := "cascade-leaves", "cascade-a", "cascade-b"
		e.cluster.CreateNamespace(t, ns)
		succeeded(t, e.waitStatus(t, a, e.offer(t, a, ns, configMapFiles("taken", "wanted", "a-only"), automated)))
		succeeded(t, e.waitStatus(t, b, e.offer(t, b, ns, configMapFiles("b-only", "taken"), automated)))
		taken, wanted := e.uidOf(t, ns, "taken"), e.uidOf(t, ns, "wanted")

		// b's next commit wants "wanted" too, but b has not synced it
		// when a is removed from Git.
		release := e.faults.hold(t, b)
		bNext := e.offer(t, b, ns, configMapFiles("b-only", "taken", "wanted"), automated)
		st := succeeded(t, e.waitStatus(t, a, e.offerRemoval(t, a)))

		if want := "application removed from Git: 1 objects deleted, 2 left to app " + b; st.GetMessage() != want {
			t.Errorf("status of %s: %q, want %q", a, st.GetMessage(), want)
		}
		for _, name := range []string{"taken", "wanted"} {
			if r := resourceOf(t, st, name); r.GetAction() != string(apply.Released) || !strings.HasPrefix(r.GetMessage(), "not deleted: left to app "+b) {
				t.Errorf("%s in the status of %s: %s: %q", name, a, r.GetAction(), r.GetMessage())
			}
		}
		if e.configMap(t, ns, "a-only") != nil {
			t.Errorf("a-only, a's own, was not deleted")
		}
		e.checkSurvived(t, ns, "taken", taken, b)
		e.checkSurvived(t, ns, "wanted", wanted, a)

		release()
		succeeded(t, e.waitStatus(t, b, bNext))
		e.checkSurvived(t, ns, "wanted", wanted, b)
	})

	t.Run("an object that cannot be read is not pruned", func(t *testing.T) {
		ns, app := "unreadable", "unreadable"
		e.cluster.CreateNamespace(t, ns)
		succeeded(t, e.waitStatus(t, app, e.offer(t, app, ns, configMapFiles("stays", "leaves"), automated)))
		uid := e.uidOf(t, ns, "leaves")
		e.faults.setUnreadable(t, "leaves")

		st := e.waitStatus(t, app, e.offer(t, app, ns, configMapFiles("stays"), automated))

		if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED || !strings.Contains(st.GetMessage(), "not pruned: reading it to check its owner failed") {
			t.Errorf("status: %s: %s, want failed: not pruned", st.GetPhase(), st.GetMessage())
		}
		if r := resourceOf(t, st, "leaves"); r.GetAction() != string(apply.Failed) || !strings.Contains(r.GetMessage(), "(injected)") {
			t.Errorf("leaves in the status: %s: %q, want failed with the read's error", r.GetAction(), r.GetMessage())
		}
		e.checkSurvived(t, ns, "leaves", uid, app)
		if !e.inventoryHas(t, app, "leaves") {
			t.Errorf("the object that could not be read left the inventory: nothing would prune it any more")
		}

		// Once it can be read, the next sync of the same desired state
		// prunes it: the failed one was not recorded as applied.
		e.faults.clearUnreadable("leaves")
		if _, err := e.syncer.SyncNow(t.Context(), app); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			if e.configMap(t, ns, "leaves") != nil {
				return errors.New("leaves is still there")
			}
			return nil
		})
		if st := succeeded(t, e.reporter.status(app)); !strings.Contains(st.GetMessage(), "1 pruned") {
			t.Errorf("status after the read works again: %s", st.GetMessage())
		}
	})
}
