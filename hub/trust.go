package hub

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/natsserver"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// privateCADir is where the hub's private CA and the certificates it
// issues live, under dataDir.
const privateCADir = "tls"

// connectNATS starts the embedded server in operator mode (the hub is its
// authority) and connects to it in process as the hub's own user, or
// connects to the external server with the configured credentials.
func (h *Hub) connectNATS() error {
	opts := []nats.Option{nats.Name("flotilla-hub"), nats.MaxReconnects(-1)}
	if h.cfg.NATS.URL != "" {
		if h.cfg.NATS.CredentialsFile != "" {
			opts = append(opts, nats.UserCredentials(h.cfg.NATS.CredentialsFile))
		}
		if h.cfg.NATS.CAFile != "" {
			opts = append(opts, nats.RootCAs(h.cfg.NATS.CAFile))
		}
		var err error
		if h.nc, err = nats.Connect(h.cfg.NATS.URL, opts...); err != nil {
			return fmt.Errorf("connect to NATS %s: %w", h.cfg.NATS.URL, err)
		}
		h.natsURL = cmp.Or(h.cfg.NATS.AdvertiseURL, h.cfg.NATS.URL)
		return nil
	}
	host, port, err := splitHostPort(h.cfg.NATS.EmbeddedListen)
	if err != nil {
		return fmt.Errorf("nats.embeddedListen: %w", err)
	}
	if h.authority, err = natsauth.LoadOrCreate(filepath.Join(h.cfg.DataDir, "trust")); err != nil {
		return fmt.Errorf("NATS authority: %w", err)
	}
	tlsConfig, err := h.listenerTLS("nats.tls", h.cfg.NATS.TLS, host)
	if err != nil {
		return err
	}
	var cluster *natsserver.Cluster
	if h.cfg.NATS.Cluster.Listen != "" {
		if cluster, err = h.natsCluster(tlsConfig); err != nil {
			return err
		}
	}
	if h.natsSrv, err = natsserver.Start(natsserver.Options{Host: host, Port: port, StoreDir: filepath.Join(h.cfg.DataDir, "nats"),
		Authority: h.authority, TLS: tlsConfig, Cluster: cluster, Log: h.log.With("component", "nats")}); err != nil {
		return err
	}
	scheme := "tls"
	if tlsConfig == nil {
		scheme = "nats"
	}
	clientURL := strings.Replace(h.natsSrv.ClientURL(), "nats://", scheme+"://", 1)
	h.natsURL = cmp.Or(h.cfg.NATS.AdvertiseURL, clientURL)
	// The hub's own user lives only in memory: a new one at every start.
	creds, _, err := h.authority.User("flotilla-hub", natsauth.HubPermissions())
	if err != nil {
		return err
	}
	user, err := natsauth.Credentials(creds)
	if err != nil {
		return err
	}
	// The server counts this connection against its clients' limit
	// (natsserver: the process's descriptors) like an agent's: should
	// the fleet reconnecting already fill it, the hub keeps trying, and
	// its start waits for JetStream to answer as it does anyway.
	opts = append(opts, user, nats.InProcessServer(h.natsSrv), nats.RetryOnFailedConnect(true))
	if tlsConfig != nil {
		// In process the server still speaks TLS; the hub trusts exactly
		// the certificate it gave the server.
		opts = append(opts, nats.Secure(pinned(tlsConfig.Certificates[0].Certificate[0])))
	}
	if h.nc, err = nats.Connect(clientURL, opts...); err != nil {
		return fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	return nil
}

// natsCluster is where the embedded server meets the other replicas'
// servers: routes authenticated both ways with certificates of the CA the
// replicas share (the private one, or nats.tls.caFile).
func (h *Hub) natsCluster(server *tls.Config) (*natsserver.Cluster, error) {
	c := h.cfg.NATS.Cluster
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats.cluster.listen: %w", err)
	}
	routes := make([]*url.URL, 0, len(c.Routes))
	for i, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("nats.cluster.routes[%d]: %w", i, err)
		}
		routes = append(routes, u)
	}
	caFile := cmp.Or(h.cfg.NATS.TLS.CAFile, filepath.Join(h.cfg.DataDir, privateCADir, tlsca.CAFile))
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("nats.cluster: the CA the replicas verify each other with: %w", err)
	}
	mutual, err := tlsca.MutualConfig(server, caPEM)
	if err != nil {
		return nil, fmt.Errorf("nats.cluster: %s: %w", caFile, err)
	}
	return &natsserver.Cluster{Name: c.Name, ServerName: h.cfg.Replica.Name, Host: host, Port: port, Routes: routes, TLS: mutual}, nil
}

// pinned is a client TLS configuration that accepts only the server
// certificate leaf (DER).
func pinned(leaf []byte) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyPeerCertificate's: the exact certificate,
		// whatever names it carries.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 || !bytes.Equal(rawCerts[0], leaf) {
				return errors.New("not the embedded NATS server's certificate")
			}
			return nil
		},
	}
}

// listenerTLS is the certificate of a listener on host: the configured
// one, or one from the hub's private CA; nil for an explicit
// insecurePlaintext, with a warning.
func (h *Hub) listenerTLS(field string, t config.TLS, host string) (*tls.Config, error) {
	if t.InsecurePlaintext {
		h.log.Warn("serving without TLS, as the configuration says: anyone on the network path can read and change this traffic", "setting", field+".insecurePlaintext")
		return nil, nil
	}
	certFile, keyFile := t.CertFile, t.KeyFile
	if certFile == "" {
		hosts := append([]string{"localhost", "127.0.0.1", "::1"}, t.Hosts...)
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			hosts = append(hosts, host) // the address it listens on, unless a wildcard
		}
		var err error
		if certFile, keyFile, err = tlsca.EnsureServer(filepath.Join(h.cfg.DataDir, privateCADir), hosts); err != nil {
			return nil, fmt.Errorf("%s: private CA: %w", field, err)
		}
	}
	cfg, err := tlsca.ServerConfig(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return cfg, nil
}

// CAFile is the file of the CA clients of the hub's listeners trust: the
// private CA's, the configured caFile, or "" for the system's roots.
func (h *Hub) CAFile() string {
	if h.cfg.TLS.CertFile != "" {
		return h.cfg.TLS.CAFile
	}
	return filepath.Join(h.cfg.DataDir, privateCADir, tlsca.CAFile)
}

// natsCA is the PEM of the CA agents verify the NATS server with, for
// their bundles.
func (h *Hub) natsCA() ([]byte, error) {
	file := filepath.Join(h.cfg.DataDir, privateCADir, tlsca.CAFile)
	switch {
	case h.cfg.NATS.URL != "":
		file = h.cfg.NATS.CAFile
	case h.cfg.NATS.TLS.InsecurePlaintext:
		file = ""
	case h.cfg.NATS.TLS.CertFile != "":
		file = h.cfg.NATS.TLS.CAFile
	}
	if file == "" {
		return nil, nil
	}
	return os.ReadFile(file)
}

// identityChanged mirrors an identity into memory and reconciles, since
// labels and revocations change what is published. A revocation reaches
// the embedded server of every replica this way, whichever revoked it.
func (h *Hub) identityChanged(id bus.Identity) {
	if id.Revoked() && id.UserKey != "" && h.authority != nil {
		if err := h.authority.Revoke(id.UserKey); err != nil {
			h.log.Error("cannot revoke the NATS user of a revoked cluster", "cluster", id.Name, "error", err)
		}
	}
	h.mu.Lock()
	h.identities[id.Name] = id
	h.mu.Unlock()
	h.requestReconcile(trace.SpanContext{})
}

// AddCluster implements api.Hub: it makes the cluster's NATS user,
// confined to the cluster, records its identity, and returns the bundle.
// The credentials are returned once and never stored.
func (h *Hub) AddCluster(ctx context.Context, name string, labels map[string]string) (*flotillav1.ClusterCredentials, error) {
	if !appspec.ValidName(name) {
		return nil, fmt.Errorf("%w: cluster name %q must be a DNS label", api.ErrInvalidArgument, name)
	}
	ca, err := h.natsCA()
	if err != nil {
		return nil, fmt.Errorf("CA of the NATS server: %w", err)
	}
	bundle := &flotillav1.ClusterCredentials{Cluster: name, NatsUrl: h.natsURL, HubKeys: h.PublicKey(), Ca: ca}
	id := bus.Identity{Name: name, Labels: labels, CreatedAt: time.Now().UTC()}
	if h.authority != nil {
		if bundle.NatsCreds, id.UserKey, err = h.authority.User(name, natsauth.ClusterPermissions(name)); err != nil {
			return nil, err
		}
	}
	if err := h.bus.CreateIdentity(ctx, id); err != nil {
		if errors.Is(err, bus.ErrIdentityExists) {
			return nil, fmt.Errorf("%w: cluster %s exists; revoke it first to issue new credentials", api.ErrAlreadyExists, name)
		}
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	h.identityChanged(id)
	return bundle, nil
}

// RevokeCluster implements api.Hub: the identity is marked revoked (the
// hub publishes nothing more for the cluster and ignores its
// registration) and its NATS user is revoked, which closes its
// connection.
func (h *Hub) RevokeCluster(ctx context.Context, name string) (time.Time, error) {
	// The NATS user first: the connection is closed before the hub stops
	// publishing for the cluster.
	h.mu.Lock()
	known := h.identities[name]
	h.mu.Unlock()
	if h.authority != nil && known.UserKey != "" {
		if err := h.authority.Revoke(known.UserKey); err != nil {
			return time.Time{}, fmt.Errorf("revoke the NATS user of %s: %w", name, err)
		}
	}
	id, err := h.bus.RevokeIdentity(ctx, name, time.Now())
	if errors.Is(err, bus.ErrNotFound) {
		return time.Time{}, fmt.Errorf("%w: cluster %s", api.ErrNotFound, name)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	// Again with the stored key, should memory not have known it yet
	// (Revoke of a revoked user does nothing).
	if h.authority != nil && id.UserKey != "" {
		if err := h.authority.Revoke(id.UserKey); err != nil {
			return time.Time{}, fmt.Errorf("revoke the NATS user of %s: %w", name, err)
		}
	}
	h.identityChanged(id)
	return id.RevokedAt, nil
}

// LabelCluster implements api.Hub: the identity's new labels retarget
// applications on the next pass.
func (h *Hub) LabelCluster(ctx context.Context, name string, labels map[string]string) error {
	id, err := h.bus.LabelIdentity(ctx, name, labels)
	if errors.Is(err, bus.ErrNotFound) {
		return fmt.Errorf("%w: cluster %s", api.ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	h.identityChanged(id)
	return nil
}
