package agent

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options configure an agent.
type Options struct {
	// ServerURLs are the API server URLs this cluster is known by in Argo
	// CD: Applications whose destination.server names one target it.
	ServerURLs []string
	// ServerURLFromKubeconfig registers the kubeconfig's server URL too.
	ServerURLFromKubeconfig bool
	// Credentials is the directory of the cluster's credentials bundle
	// (`flotilla cluster add`; the Secret of the flotilla-agent chart):
	// its name, the NATS URL and credentials, the hub's keys and the CA.
	Credentials string
	// NATSURL overrides the bundle's NATS URL (the hub's address as seen
	// from this cluster).
	NATSURL    string
	Kubeconfig string // empty: in-cluster
	CacheDir   string
	// Namespace holds the agent's own state (inventories).
	Namespace string
	// Heartbeat is how often the registration is refreshed; the hub
	// forgets a cluster after three missed beats.
	Heartbeat time.Duration
	// HealthTimeout is how long a sync waits for a wave to be healthy or a
	// hook to complete.
	HealthTimeout time.Duration
	// ResyncInterval is how often every application is compared with its
	// live objects in full, beside the watches (jittered ±10 %).
	ResyncInterval time.Duration
	// MetricsAddr serves /metrics and /healthz; empty turns it off.
	MetricsAddr string
	// Pprof adds Go's profiles under /debug/pprof/ on MetricsAddr.
	Pprof bool
	// RolloutsController runs the agent's own Argo Rollouts controller;
	// off, Rollouts are applied as they are for a controller already in
	// the cluster (pass-through).
	RolloutsController bool
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{
		Credentials:   "/etc/flotilla/credentials",
		CacheDir:      filepath.Join(os.TempDir(), "flotilla-agent"),
		Namespace:     "flotilla-system",
		Heartbeat:     15 * time.Second,
		HealthTimeout: 10 * time.Minute,
		// Argo CD's reconciliation timeout is 3 min; with watches doing the
		// work, the full comparison is only a safety net.
		ResyncInterval: 10 * time.Minute,
		MetricsAddr:    ":8080",
		// The agent is the cluster's rollouts controller unless told that
		// Argo Rollouts runs there.
		RolloutsController: true,
	}
}

// BindFlags registers the options as command-line flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Credentials, "credentials", o.Credentials, "directory of this cluster's credentials bundle (flotilla cluster add): its name, NATS URL and credentials, the hub's public keys, the CA")
	fs.StringVar(&o.NATSURL, "nats-url", o.NATSURL, "NATS server of the hub, when not the bundle's")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the cluster; empty means in-cluster")
	fs.StringVar(&o.CacheDir, "cache-dir", o.CacheDir, "where artifacts are unpacked")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the agent's own state (inventories)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", o.Heartbeat, "registration heartbeat interval")
	fs.DurationVar(&o.HealthTimeout, "health-timeout", o.HealthTimeout, "how long a sync waits for a wave to be healthy or a hook to complete")
	fs.DurationVar(&o.ResyncInterval, "resync-interval", o.ResyncInterval, "how often every application is compared with its live objects in full (drift a watch missed)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, "address of /metrics and /healthz; empty turns them off")
	fs.BoolVar(&o.RolloutsController, "rollouts-controller", o.RolloutsController, "run Argo Rollouts Rollouts and AnalysisRuns in the agent; false passes them through to an Argo Rollouts controller already in the cluster")
	fs.Func("server-url", "an API server URL this cluster is known by in Argo CD (destination.server); repeat or separate with commas", func(v string) error {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
					return fmt.Errorf("%q is not an http(s) URL", u)
				}
				o.ServerURLs = append(o.ServerURLs, u)
			}
		}
		return nil
	})
	fs.BoolVar(&o.ServerURLFromKubeconfig, "server-url-from-kubeconfig", o.ServerURLFromKubeconfig, "also register the kubeconfig's server URL as one this cluster is known by")
	fs.BoolVar(&o.Pprof, "pprof", o.Pprof, "also serve Go's profiles under /debug/pprof/ on the metrics address (for diagnosis)")
}
