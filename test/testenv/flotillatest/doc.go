// Package flotillatest starts Flotilla's own parts for the end-to-end tests
// and the benchmarks: a hub on the fixture repository (with its webhook,
// cluster registrations and app statuses), the CLI in process and the
// agent's rollouts controller. It is apart from testenv, which starts the
// parts Flotilla runs against, because the hub's packages test with
// testenv and this package imports the hub.
package flotillatest
