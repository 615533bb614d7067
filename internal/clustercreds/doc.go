// Package clustercreds reads and writes a cluster's credentials bundle,
// the files of its agent's Secret: the cluster's name, the NATS URL and
// credentials, the hub's public keys and the CA of the NATS server.
package clustercreds
