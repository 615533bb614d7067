package testenv

import (
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/natsserver"
)

// NATS is an embedded nats-server with JetStream on a free loopback port,
// in operator mode as the hub runs it.
type NATS struct {
	URL    string
	Server *server.Server
	// Authority signs its users.
	Authority *natsauth.Authority
}

// StartNATS starts the same embedded server the hub runs, with storage in a
// temporary directory, and shuts it down when the test ends.
func StartNATS(t TB) *NATS {
	t.Helper()
	dir := t.TempDir()
	auth, err := natsauth.LoadOrCreate(filepath.Join(dir, "trust"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	srv, err := natsserver.Start(natsserver.Options{Host: "127.0.0.1", Port: -1, StoreDir: filepath.Join(dir, "nats"), Authority: auth})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &NATS{URL: srv.ClientURL(), Server: srv, Authority: auth}
}

// Connect opens a client connection with the hub's permissions, closed
// when the test ends.
func (n *NATS) Connect(t TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	creds, _, err := n.Authority.User("test-hub", natsauth.HubPermissions())
	if err != nil {
		t.Fatal(err)
	}
	user, err := natsauth.Credentials(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.URL, append([]nats.Option{user}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: connect to NATS %s: %v", n.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
