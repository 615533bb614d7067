package telemetry

import (
	"context"
	"net/http"
	"os"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Setup installs a global tracer provider for service. The exporter follows
// OTEL_TRACES_EXPORTER ("otlp", "console" or "none"); with it unset, OTLP over
// HTTP is used when an OTEL_EXPORTER_OTLP_*ENDPOINT is set. Without an
// exporter spans are still made, so trace ids reach logs, status and events
// and can be correlated once an exporter is configured. The returned
// function flushes and stops the provider.
func Setup(ctx context.Context, service string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagator)
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	var exporter sdktrace.SpanExporter
	switch exporterName() {
	case "otlp":
		exporter, err = otlptracehttp.New(ctx)
	case "console":
		exporter, err = stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
	}
	if err != nil {
		return nil, err
	}
	if exporter != nil {
		opts = append(opts, sdktrace.WithBatcher(exporter))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// propagator is the wire format of trace context in NATS headers: W3C
// traceparent and baggage, whatever the process's global propagator is.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

func exporterName() string {
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" {
		return v
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		return "otlp"
	}
	return "none"
}

// Inject writes ctx's trace context into NATS headers.
func Inject(ctx context.Context, h nats.Header) nats.Header {
	if h == nil {
		h = nats.Header{}
	}
	propagator.Inject(ctx, headerCarrier(h))
	return h
}

// Extract reads trace context from NATS headers into ctx.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator.Extract(ctx, headerCarrier(h))
}

// headerCarrier keeps header names as the W3C spec writes them
// ("traceparent"): NATS headers are case-sensitive, unlike HTTP's.
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
