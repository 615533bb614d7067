// Package cli is the flotilla operator CLI: kubectl-like commands over the
// hub's HubService API, with table, wide, JSON and YAML output.
package cli
