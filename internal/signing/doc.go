// Package signing signs desired state on the hub and verifies it on agents
// with ed25519. The signature covers the exact serialized DesiredState bytes
// (see docs/adr/0001-signed-envelope.md); an agent pins the hub's public key.
package signing
