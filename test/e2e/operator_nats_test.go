package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/natsserver"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
)

// operatorNATS is a NATS server the hub does not run: an operator's, in
// operator mode behind TLS from the operator's own CA. The test is the
// operator: it holds the keys, and can stop the server and start it again
// on the same port and store, as in a NATS outage.
type operatorNATS struct {
	dir       string
	authority *natsauth.Authority
	opts      natsserver.Options
	srv       *server.Server
	url       string
	caFile    string
	// hubCredsFile holds the credentials of a user with the hub's
	// permissions.
	hubCredsFile string
}

func startOperatorNATS(t *testing.T) *operatorNATS {
	t.Helper()
	o := &operatorNATS{dir: t.TempDir()}
	var err error
	o.authority, err = natsauth.LoadOrCreate(filepath.Join(o.dir, "trust"))
	must(t, err)
	certFile, keyFile, err := tlsca.EnsureServer(filepath.Join(o.dir, "tls"), []string{"127.0.0.1", "localhost"})
	must(t, err)
	serverTLS, err := tlsca.ServerConfig(certFile, keyFile)
	must(t, err)
	o.opts = natsserver.Options{Host: "127.0.0.1", Port: -1, StoreDir: filepath.Join(o.dir, "nats"), Authority: o.authority, TLS: serverTLS}
	o.start(t)
	o.opts.Port = o.srv.Addr().(*net.TCPAddr).Port // the same port after a restart
	t.Cleanup(o.stop)
	o.url = strings.Replace(o.srv.ClientURL(), "nats://", "tls://", 1)
	o.caFile = filepath.Join(o.dir, "tls", tlsca.CAFile)
	hubCreds, _, err := o.authority.User("flotilla-hub", natsauth.HubPermissions())
	must(t, err)
	o.hubCredsFile = filepath.Join(o.dir, "flotilla-hub.creds")
	must(t, os.WriteFile(o.hubCredsFile, hubCreds, 0o600))
	return o
}

// start starts the server with what it stored.
func (o *operatorNATS) start(t *testing.T) {
	t.Helper()
	srv, err := natsserver.Start(o.opts)
	must(t, err)
	o.srv = srv
}

// stop stops the server (a second stop does nothing).
func (o *operatorNATS) stop() {
	if o.srv != nil {
		o.srv.Shutdown()
		o.srv.WaitForShutdown()
	}
}
