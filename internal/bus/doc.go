// Package bus is Flotilla's NATS layer: the JetStream buckets, object store,
// stream and subjects that carry desired state, artifacts, status,
// registrations and events. Code outside this package never names a NATS
// subject.
package bus
