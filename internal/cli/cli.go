package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// Version is the CLI's version, stamped by the build.
var Version = "dev"

type globals struct {
	hub    string
	token  string
	caFile string
	// http trusts --ca-file; nil: the default client.
	http    *http.Client
	config  string
	output  string
	timeout time.Duration
}

// NewRoot builds the flotilla command tree writing to out.
func NewRoot(out io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "flotilla",
		Short: "Operate a Flotilla fleet: clusters, applications, history",
		Long: `flotilla talks to a Flotilla hub's API. The hub address and token come from
--hub and --token, else FLOTILLA_HUB and FLOTILLA_TOKEN, else the config file:

  # ~/.config/flotilla/config.yaml
  hub: https://flotilla.example.com
  tokenFile: /home/me/.config/flotilla/token   # or token: ...

Exit codes: 0 ok, 1 failure, 2 usage, 3 not authenticated or not allowed,
4 not found, 5 hub unreachable, 6 app diff found differences.`,
		Example: `  flotilla cluster list
  flotilla app list --selector env=production
  flotilla app history api-service
  flotilla app rollback api-service --revision 42 --wait
  flotilla completion bash > /etc/bash_completion.d/flotilla`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &ExitError{Code: ExitUsage, Err: err} })
	root.PersistentFlags().StringVar(&g.hub, "hub", "", "hub API address (env FLOTILLA_HUB, config hub; default "+defaultHub+")")
	root.PersistentFlags().StringVar(&g.caFile, "ca-file", "", "PEM CA of the hub's certificate (env FLOTILLA_CA_FILE, config caFile; default: the system's roots)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "bearer token (env FLOTILLA_TOKEN, config token or tokenFile)")
	root.PersistentFlags().StringVar(&g.config, "config", "", "config file (env FLOTILLA_CONFIG; default $XDG_CONFIG_HOME/flotilla/config.yaml)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return g.resolve() }
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table, wide, json or yaml")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 10*time.Second, "how long to wait for the hub")

	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the CLI's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "flotilla", Version)
			return err
		},
	})
	root.AddCommand(clusterCommand(g), appCommand(g), rolloutCommand(g), fleetCommand(g), eventsCommand(g))
	usageErrors(root)
	return root
}

// usageErrors gives the argument errors of cmd and every command under it
// the usage exit code, as the flag errors have.
func usageErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		usageErrors(sub)
	}
}

const defaultHub = "https://127.0.0.1:8080"

// fileConfig is the CLI's config file.
type fileConfig struct {
	Hub       string `json:"hub"`
	Token     string `json:"token"`
	TokenFile string `json:"tokenFile"`
	// CAFile is the PEM CA of the hub's certificate.
	CAFile string `json:"caFile"`
}

// resolve fills --hub and --token from, in order, the flag, the
// environment, the config file and the default.
func (g *globals) resolve() error {
	path := cmp.Or(g.config, os.Getenv("FLOTILLA_CONFIG"))
	explicit := path != ""
	if !explicit {
		if dir, err := os.UserConfigDir(); err == nil {
			path = filepath.Join(dir, "flotilla", "config.yaml")
		}
	}
	var fc fileConfig
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := yaml.UnmarshalStrict(data, &fc); err != nil {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("config %s: %w", path, err)}
			}
		case explicit || !errors.Is(err, os.ErrNotExist):
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("config: %w", err)}
		}
	}
	if fc.TokenFile != "" && fc.Token == "" {
		data, err := os.ReadFile(fc.TokenFile)
		if err != nil {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("config %s: tokenFile: %w", path, err)}
		}
		fc.Token = strings.TrimSpace(string(data))
	}
	g.hub = cmp.Or(g.hub, os.Getenv("FLOTILLA_HUB"), fc.Hub, defaultHub)
	g.token = cmp.Or(g.token, os.Getenv("FLOTILLA_TOKEN"), fc.Token)
	g.caFile = cmp.Or(g.caFile, os.Getenv("FLOTILLA_CA_FILE"), fc.CAFile)
	if g.caFile == "" {
		return nil
	}
	ca, err := os.ReadFile(g.caFile)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--ca-file: %w", err)}
	}
	if g.http, err = clientTrusting(ca); err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--ca-file %s: %w", g.caFile, err)}
	}
	return nil
}

// clients are the HTTP clients by the CA they trust: one per CA, as
// http.DefaultClient is one per process, so commands run in one process
// (tests, the demo) share its connections instead of leaking them.
var clients sync.Map

func clientTrusting(ca []byte) (*http.Client, error) {
	if c, ok := clients.Load(string(ca)); ok {
		return c.(*http.Client), nil
	}
	tlsConfig, err := tlsca.ClientConfig(ca)
	if err != nil {
		return nil, err
	}
	c, _ := clients.LoadOrStore(string(ca), &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}})
	return c.(*http.Client), nil
}

func (g *globals) client() flotillav1connect.HubServiceClient {
	httpClient := g.http
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return flotillav1connect.NewHubServiceClient(httpClient, strings.TrimSuffix(g.hub, "/"), connect.WithInterceptors(bearer(g.token)))
}

func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}
}

func (g *globals) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}

func clusterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster identities, credentials and liveness"}
	cmd.AddCommand(clusterAddCommand(g), clusterLabelCommand(g), clusterRevokeCommand(g))
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   "List clusters with their labels and liveness",
		Example: "  flotilla cluster list -o wide",
		Args:    cobra.NoArgs,
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.ListClusters,
			func([]string) *flotillav1.ListClustersRequest { return &flotillav1.ListClustersRequest{} },
			clusterTable, nil),
	})
	return cmd
}

func clusterTable(w *tabwriter.Writer, answer *flotillav1.ListClustersResponse, wide bool) {
	fmt.Fprint(w, "NAME\tSTATE\tLAST HEARTBEAT\tLABELS")
	if wide {
		fmt.Fprint(w, "\tAGENT\tKUBERNETES")
	}
	fmt.Fprintln(w)
	for _, c := range answer.GetClusters() {
		r := c.GetRegistration()
		heartbeat := "never"
		if c.GetLastHeartbeat() != nil {
			heartbeat = ago(c.GetLastHeartbeat().AsTime())
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s", r.GetName(), clusterState(c), heartbeat, labelString(r.GetLabels()))
		if wide {
			fmt.Fprintf(w, "\t%s\t%s", r.GetAgentVersion(), r.GetKubernetesVersion())
		}
		fmt.Fprintln(w)
	}
}

// clusterState is what a cluster is now: revoked (since when), connected,
// or offline.
func clusterState(c *flotillav1.ClusterInfo) string {
	switch {
	case c.GetRevokedAt() != nil:
		return "revoked " + ago(c.GetRevokedAt().AsTime())
	case c.GetConnected():
		return "connected"
	case c.GetLastHeartbeat() == nil:
		return "never connected"
	}
	return "offline since " + ago(c.GetLastHeartbeat().AsTime())
}

// healthWord is an application's health as its table shows it: while its
// cluster is offline, what the agent last reported and when, never a
// health the cluster may no longer have.
func healthWord(a *flotillav1.AppInfo) string {
	st := a.GetStatus()
	health := st.HealthWord()
	if a.GetOfflineSince() == nil {
		return health
	}
	if st == nil {
		return "never reported"
	}
	return fmt.Sprintf("last reported %s %s", health, reportedAt(st))
}

// reportedAt is how long ago the agent last observed st, or "before going
// offline" when the status does not say.
func reportedAt(st *flotillav1.AppStatus) string {
	for _, t := range []*timestamppb.Timestamp{st.GetObservedAt(), st.GetFinishedAt()} {
		if t != nil && t.AsTime().Unix() > 0 {
			return ago(t.AsTime())
		}
	}
	return "before going offline"
}

func appCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "app", Short: "Applications across the fleet"}
	var cluster, selector string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List applications per cluster with sync, health and revision",
		Example: "  flotilla app list --cluster prod-eu\n  flotilla app list --selector env=production",
		Args:    cobra.NoArgs,
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.ListApps,
			func([]string) *flotillav1.ListAppsRequest {
				return &flotillav1.ListAppsRequest{Cluster: cluster, Selector: selector}
			},
			func(w *tabwriter.Writer, answer *flotillav1.ListAppsResponse, wide bool) {
				appTable(w, answer.GetApps(), wide)
			}, nil),
	}
	list.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	list.Flags().StringVar(&selector, "selector", "", "only clusters whose labels match (env=production)")
	get := &cobra.Command{
		Use:   "get APP",
		Short: "Show an application in every cluster it targets, with its objects",
		Long: `Get shows the application's sync, health, history id (and rollback pin)
in every cluster it targets, then each cluster's objects with their sync
status, health and what the last sync did, as the agent last reported them.`,
		Example: "  flotilla app get api-service\n  flotilla app get api-service -o yaml",
		Args:    cobra.ExactArgs(1),
		RunE: fetchAndPrint(g, 0, flotillav1connect.HubServiceClient.GetApp,
			func(args []string) *flotillav1.GetAppRequest { return &flotillav1.GetAppRequest{App: args[0]} },
			func(w *tabwriter.Writer, answer *flotillav1.GetAppResponse, wide bool) {
				appTable(w, answer.GetApps(), wide)
				for _, a := range answer.GetApps() {
					resourceTable(w, a)
				}
			}, nil),
	}
	get.ValidArgsFunction = g.completeApps
	_ = list.RegisterFlagCompletionFunc("cluster", g.completeClusters)
	cmd.AddCommand(list, get, historyCommand(g), diffCommand(g), syncCommand(g), rollbackCommand(g), unpinCommand(g))
	return cmd
}

func appTable(w *tabwriter.Writer, apps []*flotillav1.AppInfo, wide bool) {
	fmt.Fprint(w, "CLUSTER\tAPP\tSYNC\tHEALTH\tHISTORY\tREVISION\tROLLOUT")
	if wide {
		fmt.Fprint(w, "\tPHASE\tMESSAGE")
	}
	fmt.Fprintln(w)
	refused := map[string]string{}
	for _, a := range apps {
		if a.GetRefused() != "" {
			refused[a.GetApp()] = a.GetRefused()
		}
		if a.GetDesired() == nil {
			fmt.Fprintf(w, "-\t%s\tRefused\t-\t-\t-\t-", a.GetApp())
			if wide {
				fmt.Fprint(w, "\t-\t-")
			}
			fmt.Fprintln(w)
			continue
		}
		st := a.GetStatus()
		sync, health := a.SyncWord(), healthWord(a)
		cluster := a.GetCluster()
		if a.GetOfflineSince() != nil {
			cluster += " (offline since " + ago(a.GetOfflineSince().AsTime()) + ")"
		}
		history := fmt.Sprint(a.GetDesired().GetHistoryId())
		if p := a.GetDesired().GetPin(); p != nil {
			history += fmt.Sprintf(" (pinned to %d by %s)", p.GetRolledBackTo(), p.GetBy())
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s", cluster, a.GetApp(), sync, health, history, a.GetDesired().GetSource().Revision(),
			cmp.Or(st.RolloutSummary(), "-"))
		if wide {
			fmt.Fprintf(w, "\t%s\t%s", flotillav1.EnumWord(st.GetPhase().String(), "SYNC_PHASE_"), st.GetMessage())
		}
		fmt.Fprintln(w)
	}
	if len(refused) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "The hub refuses these applications as Git has them now; clusters keep their last good state:")
		for _, app := range slices.Sorted(maps.Keys(refused)) {
			fmt.Fprintf(w, "  %s: %s\n", app, refused[app])
		}
	}
}

// resourceTable lists one cluster's objects of an application.
func resourceTable(w *tabwriter.Writer, a *flotillav1.AppInfo) {
	res := a.GetStatus().GetResources()
	if len(res) == 0 {
		return
	}
	if a.GetOfflineSince() != nil {
		fmt.Fprintf(w, "\n%s (history %d), offline since %s; as last reported %s:\n", a.GetCluster(), a.GetStatus().GetHistoryId(),
			ago(a.GetOfflineSince().AsTime()), reportedAt(a.GetStatus()))
	} else {
		fmt.Fprintf(w, "\n%s (history %d):\n", a.GetCluster(), a.GetStatus().GetHistoryId())
	}
	for _, ro := range a.GetStatus().GetRollouts() {
		fmt.Fprintf(w, "Rollout %s/%s: %s\n", ro.GetNamespace(), ro.GetName(), ro.Summary())
		if m := ro.Measurements(); m != "" {
			fmt.Fprintf(w, "  measurements: %s\n", m)
		}
		if ro.GetMessage() != "" {
			fmt.Fprintf(w, "  %s\n", oneLine(ro.GetMessage(), 120))
		}
	}
	fmt.Fprintln(w, "KIND\tNAMESPACE\tNAME\tSYNC\tHEALTH\tLAST SYNC\tMESSAGE")
	for _, r := range res {
		kind := r.GetKind()
		if r.GetGroup() != "" {
			kind += "." + r.GetGroup()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", kind, r.GetNamespace(), r.GetName(), flotillav1.EnumWord(r.GetSyncStatus().String(), "SYNC_STATUS_"),
			flotillav1.EnumWord(r.GetHealth().String(), "HEALTH_STATUS_"), r.GetAction(), oneLine(r.GetMessage(), 80))
	}
}

func labelString(labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// now is the CLI's clock; tests stop it.
var now = time.Now

func ago(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "never"
	}
	return now().Sub(t).Round(time.Second).String() + " ago"
}

// print writes msg as a table (wide or not), JSON or YAML.
func (g *globals) print(out io.Writer, msg proto.Message, table func(*tabwriter.Writer, bool)) error {
	switch g.output {
	case "table", "wide":
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		table(w, g.output == "wide")
		return w.Flush()
	case "json", "yaml":
		data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(msg)
		if err != nil {
			return err
		}
		if g.output == "yaml" {
			if data, err = yaml.JSONToYAML(data); err != nil {
				return err
			}
		}
		_, err = out.Write(append(data, '\n'))
		return err
	}
	return fmt.Errorf("--output %q: want table, wide, json or yaml", g.output)
}

// hubError turns an API error into one line an operator can act on, with
// the exit code that says what kind of failure it was.
func hubError(g *globals, err error) error {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	switch cerr.Code() {
	case connect.CodeUnavailable:
		return &ExitError{Code: ExitHubDown, Err: fmt.Errorf("hub %s is unreachable: %s", g.hub, cerr.Message())}
	case connect.CodeUnauthenticated:
		return &ExitError{Code: ExitAuth, Err: fmt.Errorf("not authenticated: %s", cerr.Message())}
	case connect.CodePermissionDenied:
		return &ExitError{Code: ExitAuth, Err: fmt.Errorf("not allowed: %s", cerr.Message())}
	case connect.CodeNotFound:
		return &ExitError{Code: ExitNotFound, Err: errors.New(cerr.Message())}
	case connect.CodeInvalidArgument:
		return &ExitError{Code: ExitUsage, Err: errors.New(cerr.Message())}
	case connect.CodeFailedPrecondition:
		return &ExitError{Code: ExitFailure, Err: errors.New(cerr.Message())}
	}
	return &ExitError{Code: ExitFailure, Err: errors.New(cerr.Message())}
}
