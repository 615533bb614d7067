// Package testenv starts the real parts Flotilla's end-to-end tests run
// against: kube-apiservers with etcd (and, on request, the controller-manager,
// scheduler and kwok so workloads really roll out), an embedded NATS server
// with JetStream, and git repositories served over smart HTTP. Everything a
// test starts is stopped by t.Cleanup, with no process left behind.
package testenv
