// Package apitest serves the hub's real API handler over an in-memory
// fleet, for the tests of the API and of its clients (the CLI): a Hub
// whose clusters, desired states and statuses a test sets, and which
// records what the API asked of it.
package apitest
