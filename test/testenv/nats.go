package testenv

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flotilla-dev/flotilla/internal/natsserver"
)

// NATS is an embedded nats-server with JetStream on a free loopback port.
type NATS struct {
	URL    string
	Server *server.Server
}

// StartNATS starts the same embedded server the hub runs, with storage in a
// temporary directory, and shuts it down when the test ends.
func StartNATS(t TB) *NATS {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &NATS{URL: srv.ClientURL(), Server: srv}
}

// Connect opens a client connection closed when the test ends.
func (n *NATS) Connect(t TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		t.Fatalf("testenv: connect to NATS %s: %v", n.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
