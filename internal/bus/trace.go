package bus

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator is the wire format of trace context in message headers: W3C
// traceparent (and tracestate) and baggage, whatever the process's global
// propagator is, so a sync is one trace from hub to agent.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// injectTrace returns the headers that carry ctx's trace context, or nil
// when ctx has none (the message then has no headers at all).
func injectTrace(ctx context.Context) nats.Header {
	h := nats.Header{}
	propagator.Inject(ctx, headerCarrier(h))
	if len(h) == 0 {
		return nil
	}
	return h
}

// messageTrace is the trace context a message's headers carry.
type messageTrace struct {
	span    trace.SpanContext
	baggage baggage.Baggage
}

// extractTrace reads the trace context of a message's headers. Headers
// that do not parse give an empty one.
func extractTrace(h nats.Header) messageTrace {
	if len(h) == 0 {
		return messageTrace{}
	}
	ctx := propagator.Extract(context.Background(), headerCarrier(h))
	return messageTrace{span: trace.SpanContextFromContext(ctx), baggage: baggage.FromContext(ctx)}
}

// headerCarrier keeps header names as the W3C spec writes them
// ("traceparent"): NATS headers are case-sensitive, unlike HTTP's. A
// canonical name ("Traceparent") is still read.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	return http.Header(c).Get(key)
}

func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
