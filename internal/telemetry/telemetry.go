package telemetry

import (
	"context"
	"os"

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

// propagator is the process's global propagator, for libraries that read
// it: W3C traceparent and baggage, the format package bus writes in
// message headers (with its own propagator, whatever the global one is).
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
