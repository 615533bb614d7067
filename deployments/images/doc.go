// Command images builds Flotilla's container images without Docker
// (`make images`): the hub and the agent, each for linux/amd64 and
// linux/arm64, into one OCI image layout. An image is a static Go binary on
// a base layer of Debian's CA certificates and a nonroot user; the same
// commit gives the same digests, and every platform image has an SPDX SBOM
// attached as an OCI referrer.
package main
