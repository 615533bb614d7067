package reconcile

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"
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

// followHealth re-checks an application that is not healthy yet and
// reports each change of its health, until it is healthy, the timeout
// passes or a newer desired state arrives (ctx ends).
func (s *Syncer) followHealth(ctx context.Context, st *flotillav1.AppStatus, objs []*unstructured.Unstructured, sc trace.SpanContext) {
	defer s.releaseMemory()
	ctx = trace.ContextWithSpanContext(ctx, sc)
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	deadline := time.After(s.opts.HealthTimeout)
	last := st.GetHealth()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-t.C:
		}
		var obs *observed
		_ = s.recovered(st.GetApp(), "following health", func() (err error) {
			obs, err = s.observe(ctx, objs)
			return err
		})
		if obs == nil || obs.Overall == last {
			continue
		}
		last = obs.Overall
		st = withHealth(st, objs, obs)
		s.report(ctx, st, flotillav1.EventType_EVENT_TYPE_NORMAL, flotillav1.ReasonHealthChanged, "health is "+health.Name(obs.Overall))
		if last == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
			return
		}
	}
}

// report writes st as the application's status and records an event.
func (s *Syncer) report(ctx context.Context, st *flotillav1.AppStatus, typ flotillav1.EventType, reason, message string) {
	st.ObservedAt = timestamppb.Now()
	if err := s.deps.Reporter.PutStatus(ctx, st); err != nil {
		s.log.Error("report status", "app", st.GetApp(), "error", err)
	}
	s.deps.Reporter.Event(ctx, &flotillav1.Event{
		SchemaVersion: 1, Time: timestamppb.Now(), Cluster: st.GetCluster(), App: st.GetApp(), Type: typ, Reason: reason,
		Message: message, Revision: st.GetRevision(), HistoryId: st.GetHistoryId(), TraceId: st.GetTraceId(),
		Source: "agent", Actor: "agent/" + st.GetCluster(),
	})
}
