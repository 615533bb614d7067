// Package e2e holds Flotilla's end-to-end tests: hub, agents and CLI against
// real kube-apiservers, an embedded JetStream server and real git over smart
// HTTP, all started by package testenv.
package e2e
