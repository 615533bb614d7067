// Package appkey names an application in a cluster with one string,
// "<cluster>.<app>": the key of its desired state and status, and of the
// hub's maps of them. It is apart from package bus so code that only needs
// the name does not depend on the transport.
package appkey
