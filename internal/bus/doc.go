// Package bus is Flotilla's NATS layer: the embedded JetStream server the hub
// runs by default, and (in later files) the buckets, object store and
// subjects that carry desired state, artifacts, status and events. Code
// outside this package never names a NATS subject.
package bus
