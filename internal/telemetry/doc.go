// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables and carries trace context across NATS in message
// headers (W3C traceparent), so a sync is one trace from hub to agent.
package telemetry
