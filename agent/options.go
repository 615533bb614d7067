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
	Cluster      string
	Labels       map[string]string
	NATSURL      string
	NATSCreds    string
	HubPublicKey string // path of the hub's PEM public key
	Kubeconfig   string // empty: in-cluster
	CacheDir     string
	// Namespace holds the agent's own state (inventories).
	Namespace string
	// Heartbeat is how often the registration is refreshed; the hub
	// forgets a cluster after three missed beats.
	Heartbeat time.Duration
	// HealthTimeout is how long a sync follows health until it settles.
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
		NATSURL:       "nats://127.0.0.1:4222",
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
	fs.StringVar(&o.Cluster, "cluster", o.Cluster, "this cluster's name (a DNS label), required")
	fs.Func("labels", "this cluster's labels, k=v,k=v (the hub targets applications by them)", func(s string) error {
		labels, err := parseLabels(s)
		o.Labels = labels
		return err
	})
	fs.StringVar(&o.NATSURL, "nats-url", o.NATSURL, "NATS server of the hub")
	fs.StringVar(&o.NATSCreds, "nats-creds", o.NATSCreds, "NATS credentials file of this cluster")
	fs.StringVar(&o.HubPublicKey, "hub-public-key", o.HubPublicKey, "PEM file of the hub's public key; desired state not signed by it is refused (required)")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the cluster; empty means in-cluster")
	fs.StringVar(&o.CacheDir, "cache-dir", o.CacheDir, "where artifacts are unpacked")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the agent's own state (inventories)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", o.Heartbeat, "registration heartbeat interval")
	fs.DurationVar(&o.HealthTimeout, "health-timeout", o.HealthTimeout, "how long a sync follows health")
	fs.DurationVar(&o.ResyncInterval, "resync-interval", o.ResyncInterval, "how often every application is compared with its live objects in full (drift a watch missed)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, "address of /metrics and /healthz; empty turns them off")
	fs.BoolVar(&o.RolloutsController, "rollouts-controller", o.RolloutsController, "run Argo Rollouts Rollouts and AnalysisRuns in the agent; false passes them through to an Argo Rollouts controller already in the cluster")
	fs.BoolVar(&o.Pprof, "pprof", o.Pprof, "also serve Go's profiles under /debug/pprof/ on the metrics address (for diagnosis)")
}

func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not k=v", kv)
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return labels, nil
}
