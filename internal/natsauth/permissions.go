package natsauth

import (
	"github.com/nats-io/jwt/v2"
)

// Subjects and streams the permissions name. They mirror internal/bus's
// names; a test there proves each allow and each deny against a real
// server.
const (
	desiredStream  = "KV_flotilla-desired"
	artifactStream = "OBJ_flotilla-artifacts"
)

// InboxPrefix is where a cluster's requests get their replies. Each
// cluster has its own, so no cluster can subscribe to another's replies.
func InboxPrefix(cluster string) string { return "_INBOX_" + cluster }

// ClusterPermissions are everything cluster's credentials may do: receive
// its own desired states and commands, read the artifacts it names by
// digest, and write its own status, registration and events.
//
//   - Desired states: the core subscription to its keys, and short-lived
//     consumers whose filter is its keys (nats.go puts a single filter
//     into the consumer-create subject, so the server can scope it).
//     Consumer names are random; next-message and delete requests name a
//     consumer, not a filter, so they are allowed on the stream, and
//     touching another cluster's consumer needs its unguessable name (the
//     client deletes its consumers when done, which keeps the stream's
//     consumer count low). A read learns its count from the create's
//     answer, so consumer info is not allowed.
//   - Artifacts: the object's metadata by direct get on its name (the
//     digest), and its chunks by direct get (an object of one chunk) or a
//     short-lived consumer, both on the chunk subject the metadata names.
//     No listing: stream info, which lists subjects, is denied, so an
//     artifact is readable only by a client that knows its sha256 digest.
//   - Replies: to the requests it received (the hub's commands), once each.
func ClusterPermissions(cluster string) jwt.Permissions {
	inbox := InboxPrefix(cluster) + ".>"
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: []string{
			"$KV.flotilla-status." + cluster + ".>",
			"$KV.flotilla-clusters." + cluster,
			"flotilla.events." + cluster + ".>",
			"$JS.API.DIRECT.GET.KV_flotilla-status.$KV.flotilla-status." + cluster + ".>",
			"$JS.API.CONSUMER.CREATE." + desiredStream + ".*.$KV.flotilla-desired." + cluster + ".>",
			// The newest message under its own keys, asked after a
			// reconnect (the request subject names the keys' wildcard).
			"$JS.API.DIRECT.GET." + desiredStream + ".$KV.flotilla-desired." + cluster + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + desiredStream + ".*",
			"$JS.API.CONSUMER.DELETE." + desiredStream + ".*",
			"$JS.API.DIRECT.GET." + artifactStream + ".$O.flotilla-artifacts.M.*",
			"$JS.API.DIRECT.GET." + artifactStream + ".$O.flotilla-artifacts.C.*",
			"$JS.API.CONSUMER.CREATE." + artifactStream + ".*.$O.flotilla-artifacts.C.*",
			"$JS.API.CONSUMER.MSG.NEXT." + artifactStream + ".*",
			"$JS.API.CONSUMER.DELETE." + artifactStream + ".*",
		}},
		Sub: jwt.Permission{Allow: []string{
			"$KV.flotilla-desired." + cluster + ".>",
			"flotilla.cmd." + cluster,
			inbox,
		}},
		Resp: &jwt.ResponsePermission{MaxMsgs: 1},
	}
}

// HubPermissions are the hub's: everything in the Flotilla account.
func HubPermissions() jwt.Permissions {
	return jwt.Permissions{Pub: jwt.Permission{Allow: []string{">"}}, Sub: jwt.Permission{Allow: []string{">"}}}
}
