// Package dashboard serves the hub's web dashboard: its page and assets,
// embedded in the binary so that it works where nothing outside the hub
// can be reached. The page calls the hub's API (HubService, through
// Connect's JSON protocol, and its WatchFleet stream) with the session
// cookie the hub's sign-in sets (api.Auth); it holds no data of its own.
package dashboard
