// Package signing signs desired state and agent commands on the hub and
// verifies them with ed25519. A signature covers the exact serialized bytes
// (see docs/adr/0001-signed-envelope.md) behind a domain naming the message
// type and the envelope's schema version. Agents and the hub trust a key
// set, so the signing key can be rotated (docs/operations.md).
package signing
