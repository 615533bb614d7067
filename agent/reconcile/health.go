package reconcile

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/health"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// observed is the health of an application's objects and the progress
// of its Rollouts.
type observed struct {
	*health.Result
	rollouts []*flotillav1.RolloutStatus
}

// observe reads the objects' live state (a LIST per kind and namespace) and
// computes their health and where their Rollouts are.
func (s *Syncer) observe(ctx context.Context, objs []*unstructured.Unstructured) (*observed, error) {
	live, err := s.deps.Cluster.Live(ctx, objs)
	if err != nil {
		return nil, err
	}
	lookup := func(o *unstructured.Unstructured) *unstructured.Unstructured { return live[apply.RefOf(o).Key()] }
	obs := &observed{Result: health.Check(objs, lookup)}
	for _, o := range objs {
		if l := lookup(o); l != nil && rollouts.IsRollout(l) {
			obs.rollouts = append(obs.rollouts, s.deps.Rollouts.Summarize(ctx, l))
		}
	}
	return obs, nil
}

// healthOf is observe in a span of its own; nil when the objects could not
// be read.
func (s *Syncer) healthOf(ctx context.Context, objs []*unstructured.Unstructured) *observed {
	ctx, span := tracer.Start(ctx, "agent.health")
	defer span.End()
	obs, err := s.observe(ctx, objs)
	if err != nil {
		return nil
	}
	return obs
}

// report writes st as the application's status and records an event.
func (s *Syncer) report(ctx context.Context, st *flotillav1.AppStatus, typ flotillav1.EventType, reason, message string) {
	st.ObservedAt = timestamppb.Now()
	if err := s.deps.Reporter.PutStatus(ctx, st); err != nil {
		s.log.Error("report status", "app", st.GetApp(), "error", err)
	}
	s.deps.Reporter.Event(ctx, eventOf(st, typ, reason, message))
}

// eventOf is an event about the desired state st reports on.
func eventOf(st *flotillav1.AppStatus, typ flotillav1.EventType, reason, message string) *flotillav1.Event {
	return &flotillav1.Event{
		SchemaVersion: 1, Time: timestamppb.Now(), Cluster: st.GetCluster(), App: st.GetApp(), Type: typ, Reason: reason,
		Message: message, Revision: st.GetRevision(), HistoryId: st.GetHistoryId(), TraceId: st.GetTraceId(),
		Source: "agent", Actor: "agent/" + st.GetCluster(),
	}
}
