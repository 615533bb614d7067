// Package api serves the hub's HubService over Connect (gRPC, gRPC-Web and
// JSON over HTTP) for the flotilla CLI and the dashboard. Auth checks the
// bearer token, or the dashboard's session cookie and the request's
// origin, before any body is read, and rate-limits refused callers;
// bodies are bounded, as sent and decompressed; each procedure checks the
// token's role, and operator calls go to the audit stream. WatchFleet
// streams the fleet's changes to the dashboard.
package api
