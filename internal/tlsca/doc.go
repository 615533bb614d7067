// Package tlsca is the hub's private certificate authority: when no
// certificate is configured, the hub creates a CA and a server certificate
// for its NATS and HTTP listeners, and clients trust the CA's PEM.
package tlsca
