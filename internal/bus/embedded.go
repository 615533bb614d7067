package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configures the NATS server the hub runs in its own process.
type EmbeddedOptions struct {
	// Host and Port are where agents connect. Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds JetStream's streams, buckets and object stores.
	StoreDir string
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections.
	ReadyTimeout time.Duration
}

// DefaultEmbeddedOptions listens on all interfaces on NATS's standard port.
func DefaultEmbeddedOptions() EmbeddedOptions {
	return EmbeddedOptions{
		Host: "0.0.0.0",
		Port: 4222,
		// A cold JetStream start on a slow disk can take a few seconds while it
		// recovers streams; 10 s leaves room without hanging a broken start.
		ReadyTimeout: 10 * time.Second,
	}
}

// ErrServerNotReady is returned when the embedded server does not accept
// connections within EmbeddedOptions.ReadyTimeout.
var ErrServerNotReady = errors.New("embedded NATS server not ready")

// StartEmbedded starts a NATS server with JetStream and waits until it
// accepts connections. The caller stops it with Shutdown and WaitForShutdown.
func StartEmbedded(opts EmbeddedOptions) (*server.Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embedded NATS: StoreDir is required")
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = DefaultEmbeddedOptions().ReadyTimeout
	}
	srv, err := server.NewServer(&server.Options{
		Host:      opts.Host,
		Port:      opts.Port,
		JetStream: true,
		StoreDir:  opts.StoreDir,
		// The hub owns signal handling; the server must not install its own.
		NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w after %s (store %s)", ErrServerNotReady, opts.ReadyTimeout, opts.StoreDir)
	}
	return srv, nil
}
