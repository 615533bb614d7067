// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables and the W3C propagator, so a sync is one trace from
// hub to agent. Package bus carries the trace context across NATS.
package telemetry
