package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// Role is what a token may do.
type Role int

// Roles, each including the ones before it.
const (
	Viewer Role = iota + 1
	Operator
	Admin
)

// ParseRole reads "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// String is the role's name, as ParseRole reads it.
func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Token is one accepted bearer token.
type Token struct {
	Name  string
	Value string
	Role  Role
}

// Hub is what the API reads from and asks of the hub.
type Hub interface {
	// Clusters are the clusters with an identity or a registration.
	Clusters() []Cluster
	// AddCluster makes a cluster's identity and returns its credentials
	// bundle; ErrAlreadyExists for a current one.
	AddCluster(ctx context.Context, name string, labels map[string]string) (*flotillav1.ClusterCredentials, error)
	// LabelCluster replaces a cluster's labels; ErrNotFound for an
	// unknown or revoked one.
	LabelCluster(ctx context.Context, name string, labels map[string]string) error
	// RevokeCluster revokes a cluster's identity and credentials and says
	// when.
	RevokeCluster(ctx context.Context, name string) (time.Time, error)
	// Published is the newest desired state of every (cluster, app).
	Published() []*flotillav1.DesiredState
	// Statuses are the agents' last reports by bus key.
	Statuses(ctx context.Context) (map[string]*flotillav1.AppStatus, error)
	// Events reads the history and audit stream ("*" matches any).
	Events(ctx context.Context, cluster, app string, limit int) ([]*flotillav1.Event, error)
	// FollowEvents calls fn with every event appended to the stream from
	// now on until ctx ends; it returns once it follows.
	FollowEvents(ctx context.Context, fn func(*flotillav1.Event)) error
	// Audit records an operator's call.
	Audit(ctx context.Context, ev *flotillav1.Event)

	History(ctx context.Context, app, cluster string) ([]*flotillav1.HistoryEntry, error)
	Diff(ctx context.Context, app, cluster, actor string) ([]*flotillav1.ClusterDiff, error)
	Sync(ctx context.Context, app, cluster, actor string) ([]*flotillav1.ClusterResult, error)
	Rollback(ctx context.Context, app string, historyID uint64, cluster, actor string) ([]*flotillav1.ClusterResult, error)
	Revert(ctx context.Context, app, actor string) (*flotillav1.RevertAppResponse, error)
	Unpin(ctx context.Context, app, cluster, actor string) ([]*flotillav1.ClusterResult, error)
	Rollout(ctx context.Context, app, cluster string, action flotillav1.RolloutAction, full bool, actor string) ([]*flotillav1.ClusterResult, error)
	// FleetRollout is the fleet rollout of the ApplicationSet or
	// Application name; ErrNotFound when it has none.
	FleetRollout(name string) (*flotillav1.FleetRollout, error)
	// FleetRollouts are the latest rollout of every ApplicationSet and
	// Application that has one, each the caller's to keep.
	FleetRollouts() []*flotillav1.FleetRollout
	// PromoteFleetRollout promotes its current wave (wave, when set, must
	// be its index); ErrFailedPrecondition when there is nothing to promote.
	PromoteFleetRollout(ctx context.Context, name string, wave *int32, actor string) (*flotillav1.FleetRollout, error)
	// AbortFleetRollout halts it, rolling back the clusters it updated
	// with rollback; ErrFailedPrecondition when it is over.
	AbortFleetRollout(ctx context.Context, name string, rollback bool, actor string) (*flotillav1.FleetRollout, error)
}

// Errors the Hub wraps so the API answers with the right code.
var (
	// ErrNotFound is an unknown application, cluster or history entry.
	ErrNotFound = errors.New("not found")
	// ErrFailedPrecondition is a call the current state does not allow
	// (an entry whose artifact is gone, a revert that conflicts).
	ErrFailedPrecondition = errors.New("not possible now")
	// ErrUnavailable is a dependency that did not answer (NATS, Git).
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidArgument is a request the hub cannot take as it is.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAlreadyExists is a cluster added twice.
	ErrAlreadyExists = errors.New("already exists")
)

// Cluster is a cluster the hub has an identity or a registration for.
type Cluster struct {
	Name string
	// Labels are the identity's: they target applications.
	Labels map[string]string
	// Registration is the agent's last heartbeat; nil before the first.
	Registration *flotillav1.ClusterRegistration
	// RevokedAt is set once the cluster was revoked.
	RevokedAt time.Time
}

// Server implements HubService.
type Server struct {
	hub        Hub
	clusterTTL time.Duration
	now        func() time.Time
	// watchInterval is how often WatchFleet looks for changes.
	watchInterval time.Duration
	// streams counts the WatchFleet streams being served.
	streams atomic.Int64
	// stop ends the WatchFleet streams once closed (the hub stops).
	stop <-chan struct{}
}

// MaxRequestBytes bounds a HubService request's body, both as sent and
// once decompressed: its messages hold names and ids, a few hundred bytes.
const MaxRequestBytes = 1 << 20

// NewHandler returns the HubService HTTP handler and its path. It refuses,
// before reading their body, the calls that present no token auth accepts
// (see Auth.Require); it refuses a body larger than MaxRequestBytes, sent
// or decompressed, as ResourceExhausted; it checks the token's role
// against the procedure, and it records every call that needs more than
// Viewer in the audit stream.
// WatchFleet streams end once stop is closed (nil: never), as a server's
// Shutdown does not end them.
func NewHandler(hub Hub, clusterTTL time.Duration, auth *Auth, stop <-chan struct{}) (string, http.Handler) {
	return newHandler(hub, clusterTTL, auth, stop, time.Now, defaultWatchInterval)
}

// newHandler is NewHandler with the server on clock now and WatchFleet
// looking for changes every interval.
func newHandler(hub Hub, clusterTTL time.Duration, auth *Auth, stop <-chan struct{}, now func() time.Time, interval time.Duration) (string, http.Handler) {
	s := &Server{hub: hub, clusterTTL: clusterTTL, now: now, watchInterval: interval, stop: stop}
	path, handler := flotillav1connect.NewHubServiceHandler(s, connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithInterceptors(audit(hub), authorize{}))
	return path, auth.Require(http.MaxBytesHandler(handler, MaxRequestBytes))
}

// audit records every call that needs more than Viewer, allowed by the
// token's role or not, with who made it, what it asked and how it ended.
// It only ever sees calls Auth accepted.
func audit(hub Hub) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			if requiredRole[req.Spec().Procedure] == Viewer {
				return resp, err
			}
			method := req.Spec().Procedure[strings.LastIndex(req.Spec().Procedure, "/")+1:]
			what, _ := protojson.MarshalOptions{}.Marshal(req.Any().(proto.Message))
			outcome, typ := "ok", flotillav1.EventType_EVENT_TYPE_NORMAL
			if err != nil {
				outcome, typ = connect.CodeOf(err).String()+": "+errorMessage(err), flotillav1.EventType_EVENT_TYPE_WARNING
			}
			target, _ := req.Any().(interface{ GetApp() string })
			cluster, _ := req.Any().(interface{ GetCluster() string })
			ev := &flotillav1.Event{Type: typ, Reason: flotillav1.ReasonAudit, Actor: actor(ctx), Source: "api",
				Message: fmt.Sprintf("%s %s %s: %s", actor(ctx), method, what, outcome)}
			if target != nil {
				ev.App = target.GetApp()
			}
			if cluster != nil {
				ev.Cluster = cluster.GetCluster()
			}
			hub.Audit(ctx, ev)
			return resp, err
		}
	}
}

func errorMessage(err error) string {
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return cerr.Message()
	}
	return err.Error()
}

// toConnect gives a Hub error the code its wrapped sentinel calls for.
func toConnect(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, ErrFailedPrecondition):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, ErrUnavailable):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, ErrInvalidArgument):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ErrAlreadyExists):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// required checks that a request names an application.
func required(app string) error {
	if app == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("an application name is required"))
	}
	return nil
}

// ListClusters implements HubService.
func (s *Server) ListClusters(ctx context.Context, _ *connect.Request[flotillav1.ListClustersRequest]) (*connect.Response[flotillav1.ListClustersResponse], error) {
	return connect.NewResponse(&flotillav1.ListClustersResponse{Clusters: s.clusterInfos()}), nil
}

// clusterInfos are the clusters the hub knows, sorted by name.
func (s *Server) clusterInfos() []*flotillav1.ClusterInfo {
	clusters := s.hub.Clusters()
	slices.SortFunc(clusters, func(a, b Cluster) int { return strings.Compare(a.Name, b.Name) })
	out := make([]*flotillav1.ClusterInfo, 0, len(clusters))
	for _, c := range clusters {
		reg := &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: c.Name}
		if c.Registration != nil {
			reg = proto.CloneOf(c.Registration)
		}
		reg.Labels = c.Labels
		info := &flotillav1.ClusterInfo{Registration: reg, LastHeartbeat: reg.GetHeartbeatAt(),
			Connected: c.Registration != nil && c.RevokedAt.IsZero() && s.alive(reg)}
		if !c.RevokedAt.IsZero() {
			info.RevokedAt = timestamppb.New(c.RevokedAt)
		}
		out = append(out, info)
	}
	return out
}

// AddCluster implements HubService.
func (s *Server) AddCluster(ctx context.Context, req *connect.Request[flotillav1.AddClusterRequest]) (*connect.Response[flotillav1.AddClusterResponse], error) {
	creds, err := s.hub.AddCluster(ctx, req.Msg.GetName(), req.Msg.GetLabels())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.AddClusterResponse{Credentials: creds}), nil
}

// LabelCluster implements HubService.
func (s *Server) LabelCluster(ctx context.Context, req *connect.Request[flotillav1.LabelClusterRequest]) (*connect.Response[flotillav1.LabelClusterResponse], error) {
	if err := s.hub.LabelCluster(ctx, req.Msg.GetName(), req.Msg.GetLabels()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.LabelClusterResponse{}), nil
}

// RevokeCluster implements HubService.
func (s *Server) RevokeCluster(ctx context.Context, req *connect.Request[flotillav1.RevokeClusterRequest]) (*connect.Response[flotillav1.RevokeClusterResponse], error) {
	at, err := s.hub.RevokeCluster(ctx, req.Msg.GetName())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.RevokeClusterResponse{RevokedAt: timestamppb.New(at)}), nil
}

// ListApps implements HubService.
func (s *Server) ListApps(ctx context.Context, req *connect.Request[flotillav1.ListAppsRequest]) (*connect.Response[flotillav1.ListAppsResponse], error) {
	selector := labels.Everything()
	if req.Msg.GetSelector() != "" {
		var err error
		if selector, err = labels.Parse(req.Msg.GetSelector()); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("selector: %w", err))
		}
	}
	clusterLabels := map[string]labels.Set{}
	for _, c := range s.hub.Clusters() {
		clusterLabels[c.Name] = c.Labels
	}
	unfiltered := req.Msg.GetCluster() == "" && req.Msg.GetSelector() == ""
	apps, err := s.apps(ctx, func(ds *flotillav1.DesiredState) bool {
		if c := req.Msg.GetCluster(); c != "" && ds.GetCluster() != c {
			return false
		}
		return selector.Matches(clusterLabels[ds.GetCluster()])
	}, func(string) bool { return unfiltered })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&flotillav1.ListAppsResponse{Apps: apps}), nil
}

// GetApp implements HubService.
func (s *Server) GetApp(ctx context.Context, req *connect.Request[flotillav1.GetAppRequest]) (*connect.Response[flotillav1.GetAppResponse], error) {
	apps, err := s.apps(ctx, func(ds *flotillav1.DesiredState) bool { return ds.GetApp() == req.Msg.GetApp() },
		func(app string) bool { return app == req.Msg.GetApp() })
	if err != nil {
		return nil, err
	}
	if len(apps) == 0 {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("application %q is not published to any cluster", req.Msg.GetApp()))
	}
	return connect.NewResponse(&flotillav1.GetAppResponse{Apps: apps}), nil
}

// alive reports whether reg's heartbeat is younger than the cluster TTL.
func (s *Server) alive(reg *flotillav1.ClusterRegistration) bool {
	return s.now().Sub(reg.GetHeartbeatAt().AsTime()) < s.clusterTTL
}

// offlineSince is, for each cluster whose agent's heartbeat expired, its
// last heartbeat: what its applications' statuses date from at the latest.
func (s *Server) offlineSince() map[string]*timestamppb.Timestamp {
	out := map[string]*timestamppb.Timestamp{}
	for _, c := range s.hub.Clusters() {
		if c.Registration != nil && !s.alive(c.Registration) {
			out[c.Name] = c.Registration.GetHeartbeatAt()
		}
	}
	return out
}

// apps joins the published desired states that match with the agents'
// statuses, sorted by cluster and app, each with when its cluster went
// offline if it is, and why the hub refuses the application as Git has
// it now if it does. Deleted applications are left out; refused ones
// never published are listed, without a cluster, where unpublished says.
func (s *Server) apps(ctx context.Context, match func(*flotillav1.DesiredState) bool, unpublished func(app string) bool) ([]*flotillav1.AppInfo, error) {
	statuses, err := s.hub.Statuses(ctx)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("read statuses: %w", err))
	}
	refused := map[string]string{}
	for _, st := range statuses {
		if st.GetCluster() == bus.HubEventsCluster && st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_FAILED {
			refused[st.GetApp()] = st.GetMessage()
		}
	}
	offline := s.offlineSince()
	var out []*flotillav1.AppInfo
	published := map[string]bool{}
	for _, ds := range s.hub.Published() {
		if ds.GetDeletion() != nil {
			continue
		}
		published[ds.GetApp()] = true
		if !match(ds) {
			continue
		}
		out = append(out, &flotillav1.AppInfo{Cluster: ds.GetCluster(), App: ds.GetApp(), Desired: ds, Status: statuses[appkey.Join(ds.GetCluster(), ds.GetApp())],
			OfflineSince: offline[ds.GetCluster()], Refused: refused[ds.GetApp()]})
	}
	for app, why := range refused {
		if !published[app] && unpublished(app) {
			out = append(out, &flotillav1.AppInfo{App: app, Refused: why})
		}
	}
	slices.SortFunc(out, func(a, b *flotillav1.AppInfo) int {
		return strings.Compare(appkey.Join(a.GetCluster(), a.GetApp()), appkey.Join(b.GetCluster(), b.GetApp()))
	})
	return out, nil
}

// GetAppHistory implements HubService.
func (s *Server) GetAppHistory(ctx context.Context, req *connect.Request[flotillav1.GetAppHistoryRequest]) (*connect.Response[flotillav1.GetAppHistoryResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	entries, err := s.hub.History(ctx, req.Msg.GetApp(), req.Msg.GetCluster())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.GetAppHistoryResponse{Entries: entries}), nil
}

// DiffApp implements HubService.
func (s *Server) DiffApp(ctx context.Context, req *connect.Request[flotillav1.DiffAppRequest]) (*connect.Response[flotillav1.DiffAppResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	diffs, err := s.hub.Diff(ctx, req.Msg.GetApp(), req.Msg.GetCluster(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.DiffAppResponse{Clusters: diffs}), nil
}

// ListEvents implements HubService.
func (s *Server) ListEvents(ctx context.Context, req *connect.Request[flotillav1.ListEventsRequest]) (*connect.Response[flotillav1.ListEventsResponse], error) {
	cluster, app, limit := req.Msg.GetCluster(), req.Msg.GetApp(), int(req.Msg.GetLimit())
	if cluster == "" {
		cluster = "*"
	}
	if app == "" {
		app = "*"
	}
	if limit <= 0 {
		limit = 100
	}
	events, err := s.hub.Events(ctx, cluster, app, limit)
	if err != nil {
		return nil, toConnect(fmt.Errorf("%w: read events: %w", ErrUnavailable, err))
	}
	return connect.NewResponse(&flotillav1.ListEventsResponse{Events: events}), nil
}

// SyncApp implements HubService.
func (s *Server) SyncApp(ctx context.Context, req *connect.Request[flotillav1.SyncAppRequest]) (*connect.Response[flotillav1.SyncAppResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	results, err := s.hub.Sync(ctx, req.Msg.GetApp(), req.Msg.GetCluster(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.SyncAppResponse{Clusters: results}), nil
}

// RollbackApp implements HubService.
func (s *Server) RollbackApp(ctx context.Context, req *connect.Request[flotillav1.RollbackAppRequest]) (*connect.Response[flotillav1.RollbackAppResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	if req.Msg.GetHistoryId() == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("a history id is required (see flotilla app history)"))
	}
	results, err := s.hub.Rollback(ctx, req.Msg.GetApp(), req.Msg.GetHistoryId(), req.Msg.GetCluster(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.RollbackAppResponse{Clusters: results}), nil
}

// RevertApp implements HubService.
func (s *Server) RevertApp(ctx context.Context, req *connect.Request[flotillav1.RevertAppRequest]) (*connect.Response[flotillav1.RevertAppResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	resp, err := s.hub.Revert(ctx, req.Msg.GetApp(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(resp), nil
}

// UnpinApp implements HubService.
func (s *Server) UnpinApp(ctx context.Context, req *connect.Request[flotillav1.UnpinAppRequest]) (*connect.Response[flotillav1.UnpinAppResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	results, err := s.hub.Unpin(ctx, req.Msg.GetApp(), req.Msg.GetCluster(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.UnpinAppResponse{Clusters: results}), nil
}

// RolloutApp implements HubService.
func (s *Server) RolloutApp(ctx context.Context, req *connect.Request[flotillav1.RolloutAppRequest]) (*connect.Response[flotillav1.RolloutAppResponse], error) {
	if err := required(req.Msg.GetApp()); err != nil {
		return nil, err
	}
	action := req.Msg.GetAction()
	if action == flotillav1.RolloutAction_ROLLOUT_ACTION_UNSPECIFIED {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("an action is required: promote, abort, retry or pause"))
	}
	if req.Msg.GetFull() && action != flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("full goes with promote only"))
	}
	results, err := s.hub.Rollout(ctx, req.Msg.GetApp(), req.Msg.GetCluster(), action, req.Msg.GetFull(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.RolloutAppResponse{Clusters: results}), nil
}

// Targets are the published, not deleted desired states of app (in
// cluster, when it is set), sorted by cluster. It returns ErrNotFound
// (wrapped) when there is none.
func Targets(published []*flotillav1.DesiredState, app, cluster string) ([]*flotillav1.DesiredState, error) {
	var out []*flotillav1.DesiredState
	for _, ds := range published {
		if ds.GetApp() == app && ds.GetDeletion() == nil && (cluster == "" || ds.GetCluster() == cluster) {
			out = append(out, ds)
		}
	}
	if len(out) == 0 {
		if cluster != "" {
			return nil, fmt.Errorf("%w: application %q is not published to cluster %q", ErrNotFound, app, cluster)
		}
		return nil, fmt.Errorf("%w: application %q is not published to any cluster", ErrNotFound, app)
	}
	slices.SortFunc(out, func(a, b *flotillav1.DesiredState) int { return strings.Compare(a.GetCluster(), b.GetCluster()) })
	return out, nil
}

func (s *Server) GetFleetRollout(_ context.Context, req *connect.Request[flotillav1.GetFleetRolloutRequest]) (*connect.Response[flotillav1.GetFleetRolloutResponse], error) {
	if err := requiredName(req.Msg.GetName()); err != nil {
		return nil, err
	}
	r, err := s.hub.FleetRollout(req.Msg.GetName())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.GetFleetRolloutResponse{Rollout: r}), nil
}

func (s *Server) PromoteFleetRollout(ctx context.Context, req *connect.Request[flotillav1.PromoteFleetRolloutRequest]) (*connect.Response[flotillav1.PromoteFleetRolloutResponse], error) {
	if err := requiredName(req.Msg.GetName()); err != nil {
		return nil, err
	}
	r, err := s.hub.PromoteFleetRollout(ctx, req.Msg.GetName(), req.Msg.Wave, actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.PromoteFleetRolloutResponse{Rollout: r}), nil
}

func (s *Server) AbortFleetRollout(ctx context.Context, req *connect.Request[flotillav1.AbortFleetRolloutRequest]) (*connect.Response[flotillav1.AbortFleetRolloutResponse], error) {
	if err := requiredName(req.Msg.GetName()); err != nil {
		return nil, err
	}
	r, err := s.hub.AbortFleetRollout(ctx, req.Msg.GetName(), req.Msg.GetRollback(), actor(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&flotillav1.AbortFleetRolloutResponse{Rollout: r}), nil
}

// requiredName checks that a request names an ApplicationSet or an
// Application.
func requiredName(name string) error {
	if name == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("an ApplicationSet or Application name is required"))
	}
	return nil
}
