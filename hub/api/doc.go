// Package api serves the hub's HubService over Connect (gRPC, gRPC-Web and
// JSON over HTTP) for the flotilla CLI and the dashboard, with bearer-token
// authentication and roles.
package api
