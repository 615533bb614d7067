package bus

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/natsserver"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// The tests run against the embedded nats-server with JetStream the hub
// runs, one per test, in a temporary directory.

// testServer is an embedded NATS server a test can restart on the same
// port and store, as an operator restarts the hub.
type testServer struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
	auth *natsauth.Authority
	// hubCreds are the credentials of a user with the hub's permissions.
	hubCreds []byte
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	s := &testServer{t: t, dir: t.TempDir(), port: -1}
	auth, err := natsauth.LoadOrCreate(s.dir + "/trust")
	if err != nil {
		t.Fatal(err)
	}
	s.auth = auth
	if s.hubCreds, _, err = auth.User("hub", natsauth.HubPermissions()); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) start() {
	s.t.Helper()
	srv, err := natsserver.Start(natsserver.Options{Host: "127.0.0.1", Port: s.port, StoreDir: s.dir + "/nats", Authority: s.auth})
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv = srv
}

func (s *testServer) stop() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// restart stops the server and starts it again with what it stored.
func (s *testServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func (s *testServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// connect opens a client connection with the hub's permissions that
// reconnects for ever, closed when the test ends.
func (s *testServer) connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	return s.connectAs(s.hubCreds, opts...)
}

// connectAs is connect with the user of creds.
func (s *testServer) connectAs(creds []byte, opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	user, err := natsauth.Credentials(creds)
	if err != nil {
		s.t.Fatal(err)
	}
	opts = append([]nats.Option{user, nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(s.url(), opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// connectCluster opens a connection as cluster's agent does: with the
// credentials the hub issues for it.
func (s *testServer) connectCluster(cluster string, opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	creds, _, err := s.auth.User(cluster, natsauth.ClusterPermissions(cluster))
	if err != nil {
		s.t.Fatal(err)
	}
	clusterOpts, err := natsauth.ClusterOptions(cluster, creds)
	if err != nil {
		s.t.Fatal(err)
	}
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, append(clusterOpts, opts...)...)
	nc, err := nats.Connect(s.url(), opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// provision provisions the buckets with opts (DefaultOptions when nil)
// on a new connection.
func (s *testServer) provision(opts *Options) *Bus {
	s.t.Helper()
	o := DefaultOptions()
	if opts != nil {
		o = *opts
	}
	b, err := Provision(s.t.Context(), s.connect(), o)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// newBus is a provisioned bus on a fresh server.
func newBus(t *testing.T) *Bus {
	t.Helper()
	return startServer(t).provision(nil)
}

// eventually polls condition every 20 ms until it returns nil or timeout
// passes, then fails the test with the last error.
func eventually(t *testing.T, timeout time.Duration, condition func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := condition()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, err)
		case <-tick.C:
		}
	}
}

// signed wraps a desired state as the hub publishes it. The bus never
// verifies signatures, so none is made.
func signed(t testing.TB, ds *flotillav1.DesiredState) *flotillav1.SignedDesiredState {
	t.Helper()
	data, err := proto.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	return &flotillav1.SignedDesiredState{SchemaVersion: 1, DesiredState: data}
}

// state is desired state history id of (cluster, app), signed.
func state(t testing.TB, cluster, app string, id uint64) *flotillav1.SignedDesiredState {
	t.Helper()
	return signed(t, &flotillav1.DesiredState{SchemaVersion: 1, Cluster: cluster, App: app, HistoryId: id})
}

// historyID is the history id of an entry's desired state.
func historyID(t testing.TB, e DesiredEntry) uint64 {
	t.Helper()
	ds := &flotillav1.DesiredState{}
	if err := proto.Unmarshal(e.State.GetDesiredState(), ds); err != nil {
		t.Fatal(err)
	}
	return ds.GetHistoryId()
}

// gatedDialer dials NATS only while it is open, so a test decides when a
// connection may reconnect.
type gatedDialer struct{ closed atomic.Bool }

var errGateClosed = errors.New("gate closed by the test")

func (d *gatedDialer) Dial(network, address string) (net.Conn, error) {
	if d.closed.Load() {
		return nil, errGateClosed
	}
	return (&net.Dialer{Timeout: time.Second}).Dial(network, address)
}
