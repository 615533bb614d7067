// Package natsserver runs the NATS server with JetStream that the hub embeds
// by default (and the tests start). It is apart from package bus so agents,
// which only dial NATS, do not link the server.
package natsserver
