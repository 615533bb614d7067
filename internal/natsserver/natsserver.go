package natsserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flotilla-dev/flotilla/internal/natsauth"
)

// Options configures the NATS server the hub runs in its own process.
type Options struct {
	// Host and Port are where agents connect. Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds JetStream's streams, buckets and object stores.
	StoreDir string
	// Authority puts the server into operator mode: only users it signed
	// connect, with the permissions their JWTs carry. Required.
	Authority *natsauth.Authority
	// TLS is the listener's certificate; nil serves plaintext, which the
	// caller allows only when its configuration says so.
	TLS *tls.Config
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections (default 10 s).
	ReadyTimeout time.Duration
	// Cluster, when set, joins the server to a JetStream cluster with the
	// other hub replicas' servers; nil runs it alone.
	Cluster *Cluster
	// Log receives the server's notices, warnings and errors; nil
	// discards them.
	Log *slog.Logger
}

// Cluster is where a server meets the others of its JetStream cluster.
type Cluster struct {
	// Name is the cluster's, the same on every server.
	Name string
	// ServerName is this server's, unique in the cluster.
	ServerName string
	// Host and Port are where it accepts routes from the others.
	Host string
	Port int
	// Routes are the others' route URLs (its own among them is ignored).
	Routes []*url.URL
	// TLS authenticates both ends of every route (tlsca.MutualConfig):
	// only a server with a certificate of the cluster's CA joins.
	// Required.
	TLS *tls.Config
}

// defaultReadyTimeout leaves a cold JetStream start on a slow disk a few
// seconds to recover its streams without hanging a broken start.
const defaultReadyTimeout = 10 * time.Second

// ErrServerNotReady is returned when the embedded server does not accept
// connections within Options.ReadyTimeout.
var ErrServerNotReady = errors.New("embedded NATS server not ready")

// Start starts a NATS server with JetStream and waits until it
// accepts connections. The caller stops it with Shutdown and WaitForShutdown.
func Start(opts Options) (*server.Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embedded NATS: StoreDir is required")
	}
	if opts.Authority == nil {
		return nil, errors.New("embedded NATS: an Authority is required (no anonymous clients)")
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = defaultReadyTimeout
	}
	// The server logs a listen failure and never becomes ready; try the
	// address first, so a taken port is said at once and by name.
	if opts.Port > 0 {
		addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
		ln.Close()
	}
	serverOpts := &server.Options{
		Host:      opts.Host,
		Port:      opts.Port,
		JetStream: true,
		StoreDir:  opts.StoreDir,
		// The hub owns signal handling; the server must not install its own.
		NoSigs: true,
		// Every agent reads with short-lived consumers (a catch-up after
		// each connect, an artifact fetch): a fleet reconnecting at once
		// holds one per agent for a moment, past the server's default of
		// 1,000 per stream.
		JetStreamLimits: server.JSLimitOpts{DefaultMaxConsumers: -1},
		// A fleet starting at once has every agent's catch-up consumer
		// create waiting on the JetStream API queue, which the server
		// empties, dropping every request in it, past its default of
		// 10,000: the hub's own requests would go with them. A waiting
		// request is a few hundred bytes.
		JetStreamRequestQueueLimit: 100_000,
		MaxConn:                    maxConnections(),
	}
	if opts.TLS != nil {
		serverOpts.TLSConfig, serverOpts.TLS, serverOpts.TLSTimeout = opts.TLS, true, 5
	}
	if c := opts.Cluster; c != nil {
		if c.TLS == nil || c.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
			return nil, errors.New("embedded NATS: a cluster's routes need mutual TLS (no unauthenticated route)")
		}
		serverOpts.ServerName = c.ServerName
		serverOpts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port, TLSConfig: c.TLS, TLSTimeout: 5}
		serverOpts.Routes = c.Routes
	}
	if err := opts.Authority.Configure(serverOpts); err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv, err := server.NewServer(serverOpts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if opts.Log != nil {
		srv.SetLoggerV2(serverLog{opts.Log}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w after %s (store %s)", ErrServerNotReady, opts.ReadyTimeout, opts.StoreDir)
	}
	opts.Authority.Attach(srv)
	return srv, nil
}

// reservedFiles are the descriptors the hub keeps for itself: its streams'
// files, its Git mirrors, its API's connections.
const reservedFiles = 2048

// maxConnections is how many clients the server takes: what the process
// may open, less reservedFiles. A fleet reconnecting at once holds
// sockets in TLS handshakes besides its connections; past the process's
// limit, the hub itself could open no file ("too many open files" on its
// Git mirror at 10,000 agents under a limit of 20,000), where a client
// refused for the limit only tries again. 0 (the server's default) when
// the limit cannot be read or is too small to leave room.
func maxConnections() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 2*reservedFiles {
		return 0
	}
	return int(min(lim.Cur-reservedFiles, server.DEFAULT_MAX_CONNECTIONS))
}
