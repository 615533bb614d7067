package rollouts

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// stepClock remembers when each step of a rollout began, so its span
// covers the step from start to end across reconciles.
type stepClock struct {
	mu      sync.Mutex
	started map[string]time.Time
}

func stepKey(r *rolloutCtx, step string) string {
	return r.obj.GetNamespace() + "/" + r.obj.GetName() + "/" + r.hash + "/" + step
}

// begin notes that step began (the first time it is seen).
func (r *rolloutCtx) stepBegins(step string) {
	c := &r.c.steps
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.started[stepKey(r, step)]; !ok {
		c.started[stepKey(r, step)] = r.now
	}
}

// stepStart is when this agent saw step begin, precisely (the pause
// conditions in the status keep whole seconds only).
func (r *rolloutCtx) stepStart(step string) (time.Time, bool) {
	c := &r.c.steps
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.started[stepKey(r, step)]
	return t, ok
}

// stepForget drops what stepBegins noted of step.
func (r *rolloutCtx) stepForget(step string) {
	c := &r.c.steps
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.started, stepKey(r, step))
}

// stepEnds records the step's span, from when it began until now.
func (r *rolloutCtx) stepEnds(ctx context.Context, step, outcome string) {
	c := &r.c.steps
	c.mu.Lock()
	start, ok := c.started[stepKey(r, step)]
	delete(c.started, stepKey(r, step))
	c.mu.Unlock()
	if !ok {
		start = r.now
	}
	_, span := r.c.tracer.Start(ctx, "rollout.step "+step, trace.WithTimestamp(start), trace.WithAttributes(
		attribute.String("k8s.namespace.name", r.obj.GetNamespace()), attribute.String("argoproj.rollout", r.obj.GetName()),
		attribute.String("argoproj.pod_template_hash", r.hash), attribute.String("argoproj.step.outcome", outcome)))
	span.End(trace.WithTimestamp(time.Now()))
}

// forgetRollout drops every clock of one rollout (a new revision starts
// its steps afresh).
func (c *stepClock) forgetRollout(namespace, name string) {
	prefix := namespace + "/" + name + "/"
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.started {
		if strings.HasPrefix(k, prefix) {
			delete(c.started, k)
		}
	}
}

// measured records one measurement as a span of its own.
func (r *rolloutCtx) measured(ctx context.Context, run string) analysis.Observe {
	return func(metric string, m analysis.Measurement) {
		_, span := r.c.tracer.Start(ctx, "rollout.measurement "+metric, trace.WithTimestamp(m.StartedAt.Time), trace.WithAttributes(
			attribute.String("argoproj.rollout", r.obj.GetName()), attribute.String("argoproj.analysisrun", run),
			attribute.String("argoproj.metric", metric), attribute.String("argoproj.measurement.phase", string(m.Phase)),
			attribute.String("argoproj.measurement.value", m.Value)))
		if m.Message != "" {
			span.SetAttributes(attribute.String("argoproj.measurement.message", m.Message))
		}
		span.End(trace.WithTimestamp(m.FinishedAt.Time))
	}
}

func stepName(i int, s *Step) string {
	switch {
	case s.SetWeight != nil:
		return fmt.Sprintf("%d setWeight %d", i, *s.SetWeight)
	case s.Pause != nil:
		return fmt.Sprintf("%d pause", i)
	case s.Analysis != nil:
		return fmt.Sprintf("%d analysis", i)
	case s.SetCanaryScale != nil:
		return fmt.Sprintf("%d setCanaryScale", i)
	}
	return fmt.Sprint(i)
}
