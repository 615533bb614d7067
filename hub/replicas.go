package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/fleet"
	"github.com/flotilla-dev/flotilla/hub/leader"
	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// fencedStore is the publisher's and the fleet controller's store with
// every write made as the leader: desired states fenced by the lease's
// revision (a deposed leader's write fails at the server), artifacts and
// fleet rollout records only while the lease holds (a record is written
// expecting its revision, too).
type fencedStore struct {
	*bus.Bus
	elector *leader.Elector
}

var (
	_ publish.Store = fencedStore{}
	_ fleet.Store   = fencedStore{}
)

func (s fencedStore) PublishDesired(ctx context.Context, puts []bus.DesiredPut) ([]uint64, error) {
	revisions := make([]uint64, len(puts))
	err := s.elector.Fenced(ctx, func(ctx context.Context, lease uint64) error {
		var err error
		revisions, err = s.Bus.PublishDesiredFenced(ctx, lease, puts)
		return err
	})
	return revisions, err
}

func (s fencedStore) PutArtifact(ctx context.Context, digest string, data []byte) (stored bool, err error) {
	err = s.elector.Fenced(ctx, func(ctx context.Context, _ uint64) error {
		stored, err = s.Bus.PutArtifact(ctx, digest, data)
		return err
	})
	return stored, err
}

func (s fencedStore) PutFleetRollout(ctx context.Context, id string, r *flotillav1.SignedFleetRollout, revision uint64) (rev uint64, err error) {
	err = s.elector.Fenced(ctx, func(ctx context.Context, _ uint64) error {
		rev, err = s.Bus.PutFleetRollout(ctx, id, r, revision)
		return err
	})
	return rev, err
}

func (s fencedStore) DeleteArtifact(ctx context.Context, digest string) error {
	return s.elector.Fenced(ctx, func(ctx context.Context, _ uint64) error { return s.Bus.DeleteArtifact(ctx, digest) })
}

// lead is the leader's work, for as long as ctx (its term) lasts: it reads
// the bus's desired states again (whatever the previous leader wrote
// before this term began is in them, and nothing it writes after lands),
// brings Git's changes in, reconciles once, and then polls, reconciles
// and collects garbage.
func (h *Hub) lead(ctx context.Context) {
	h.metrics.leader.Set(1)
	defer h.metrics.leader.Set(0)
	if err := h.publisher.Load(ctx); err != nil {
		h.log.Error("leader: cannot read the published desired states; giving the lease up", "error", err)
		return
	}
	for _, r := range h.repos {
		h.poll(ctx, r) // the first pass sees every repository fetched
	}
	_ = h.reconcile(ctx)
	h.readyOnce.Do(func() { close(h.ready) })
	var wg sync.WaitGroup
	for _, r := range h.repos {
		wg.Go(func() { h.pollLoop(ctx, r) })
	}
	wg.Go(func() { h.reconcileLoop(ctx) })
	wg.Go(func() { h.chartRefreshLoop(ctx) })
	wg.Go(func() { h.gcLoop(ctx) })
	wg.Wait()
}

// followLeader marks the hub ready to serve once another replica leads
// (this one's own first pass marks it too, in lead).
func (h *Hub) followLeader(ctx context.Context) {
	for {
		holder, self, changed := h.elector.Leader()
		if holder.Holder != "" && !self {
			h.readyOnce.Do(func() { close(h.ready) })
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-h.ready:
			return
		case <-changed:
		}
	}
}

// forwardedHeader marks a call a follower forwarded to the leader, which
// never forwards it again.
const forwardedHeader = "Flotilla-Forwarded-By"

// leaderOnly serves a call with local on the leader, and on a follower
// with forward, which sends it to the leader (toLeader): every call that
// needs more than the viewer role, and webhooks. Reads are served by every
// replica.
func (h *Hub) leaderOnly(local, forward http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, self, _ := h.elector.Leader(); self || api.ServedByAnyReplica(r.URL.Path) {
			local.ServeHTTP(w, r)
			return
		}
		forward.ServeHTTP(w, r)
	})
}

// forwardTimeout bounds how long a forwarded call waits for the leader's
// answer (an operator's sync waits for agents, at most a minute).
const forwardTimeout = 2 * time.Minute

// toLeader forwards a call to the leader, which authenticates, authorizes
// and audits it as its own; the caller wraps it in this replica's own
// authentication and size limit, so nothing unauthenticated or oversized
// is passed on.
func (h *Hub) toLeader() http.Handler {
	caPEM, _ := os.ReadFile(h.CAFile())
	clientTLS, err := tlsca.ClientConfig(caPEM)
	if err != nil {
		clientTLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	transport := &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: forwardTimeout}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		holder, _, _ := h.elector.Leader()
		if by := r.Header.Get(forwardedHeader); by != "" {
			http.Error(w, fmt.Sprintf("hub replica %s forwarded this call to %s, which no longer leads; retry", by, h.cfg.Replica.Name), http.StatusServiceUnavailable)
			return
		}
		target, err := url.Parse(holder.APIURL)
		if holder.Holder == "" || err != nil || target.Host == "" {
			http.Error(w, "no hub replica leads at the moment (an election is under way); retry", http.StatusServiceUnavailable)
			return
		}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				// The host the caller named, which a browser's Origin
				// names too: the leader checks a dashboard call's origin.
				pr.Out.Host = pr.In.Host
				pr.Out.Header.Set(forwardedHeader, h.cfg.Replica.Name)
			},
			Transport: transport,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				http.Error(w, fmt.Sprintf("the leading hub replica %s did not answer: %v; retry", holder.Holder, err), http.StatusServiceUnavailable)
			},
		}
		proxy.ServeHTTP(w, r)
	})
}

// apiURL is where the other replicas reach this one's API.
func (h *Hub) apiURL() string {
	if h.cfg.Replica.AdvertiseURL != "" {
		return h.cfg.Replica.AdvertiseURL
	}
	scheme := "https"
	if h.apiTLS == nil {
		scheme = "http"
	}
	_, port, _ := net.SplitHostPort(h.cfg.Listen)
	return scheme + "://" + net.JoinHostPort("localhost", port)
}

// sharedFiles are what hub replicas must hold alike: the signing key, the
// NATS operator and accounts, and the private CA (its key too, so each
// replica issues its own certificate from it). A lone hub creates them at
// its first start; replicas refuse to, since each would create its own.
func sharedFiles(dataDir string) []string {
	return []string{
		filepath.Join(dataDir, signing.KeyFile),
		filepath.Join(dataDir, "trust", natsauth.OperatorSeedFile),
		filepath.Join(dataDir, "trust", natsauth.SystemSeedFile),
		filepath.Join(dataDir, "trust", natsauth.AccountSeedFile),
		filepath.Join(dataDir, privateCADir, tlsca.CAFile),
		filepath.Join(dataDir, privateCADir, tlsca.CAKeyFile),
	}
}

// requireShared fails when a replica of a cluster lacks a shared file;
// privateCA says whether its certificates come from the private CA.
func requireShared(dataDir, replica string, privateCA bool) error {
	var missing []string
	for _, f := range sharedFiles(dataDir) {
		if !privateCA && filepath.Dir(f) == filepath.Join(dataDir, privateCADir) {
			continue
		}
		if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("hub replica %s lacks %s: replicas share their keys and CA, which none creates on its own; "+
		"create them once with `hub init -data-dir DIR` and copy them into every replica's dataDir "+
		"(docs/operations.md, \"Running it highly available\")", replica, strings.Join(missing, ", "))
}

// Init creates in dataDir what hub replicas share (sharedFiles), keeping
// whatever is there already, and returns the files.
func Init(dataDir string) ([]string, error) {
	if _, err := signing.LoadKeySet(dataDir); errors.Is(err, signing.ErrNoKey) {
		if err := signing.CreateKey(dataDir); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if _, err := natsauth.LoadOrCreate(filepath.Join(dataDir, "trust")); err != nil {
		return nil, err
	}
	if _, err := tlsca.EnsureCA(filepath.Join(dataDir, privateCADir)); err != nil {
		return nil, err
	}
	return sharedFiles(dataDir), nil
}

// provision creates or opens the buckets, retrying until it succeeds or
// ctx ends (untilAnswered): a replica of a cluster waits for its
// JetStream cluster to elect its leaders (the other replicas may still be
// starting).
func (h *Hub) provision(ctx context.Context, opts bus.Options, clustered bool) (*bus.Bus, error) {
	waiting := "waiting for JetStream to answer"
	if clustered {
		waiting = "waiting for the JetStream cluster of the replicas"
	}
	return untilAnswered(ctx, h.log.With("replica", h.cfg.Replica.Name), waiting, func() (*bus.Bus, error) {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return bus.Provision(attempt, h.nc, opts)
	})
}

// untilAnswered runs start until it succeeds or ctx ends, backing off up
// to 5 s and logging each failure as waiting. What the hub sets up at its
// start (its buckets, its watches) asks JetStream, and a server that
// every agent of the fleet reconnects to at once (the hub restarted) can
// take longer than one request's timeout to answer: the hub waits for it
// instead of exiting.
func untilAnswered[T any](ctx context.Context, log *slog.Logger, waiting string, start func() (T, error)) (T, error) {
	retry := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	return backoff.RetryNotifyWithData(start, retry, func(err error, wait time.Duration) {
		log.Warn(waiting, "retry in", wait.String(), "error", err)
	})
}
