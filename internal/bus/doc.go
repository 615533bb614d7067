// Package bus is Flotilla's NATS layer: the JetStream buckets, object store,
// stream and subjects that carry desired state, artifacts, status,
// registrations and events, each message with its trace context (W3C
// headers). Code outside this package never names a NATS subject or header,
// and tells a missing key or artifact by ErrNotFound, not by JetStream's.
package bus
