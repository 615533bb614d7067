package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"k8s.io/apimachinery/pkg/labels"

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

// Token is one accepted bearer token.
type Token struct {
	Name  string
	Value string
	Role  Role
}

// Fleet is what the API reads from the hub.
type Fleet interface {
	// Clusters are the known registrations.
	Clusters() []*flotillav1.ClusterRegistration
	// Published is the newest desired state of every (cluster, app).
	Published() []*flotillav1.DesiredState
}

// Statuses reads the agents' reports.
type Statuses interface {
	Statuses(ctx context.Context) (map[string]*flotillav1.AppStatus, error)
}

// Server implements HubService.
type Server struct {
	fleet      Fleet
	statuses   Statuses
	clusterTTL time.Duration
}

// NewHandler returns the HubService HTTP handler and its path, requiring
// one of tokens on every call.
func NewHandler(fleet Fleet, statuses Statuses, clusterTTL time.Duration, tokens []Token) (string, http.Handler) {
	s := &Server{fleet: fleet, statuses: statuses, clusterTTL: clusterTTL}
	return flotillav1connect.NewHubServiceHandler(s, connect.WithInterceptors(authenticate(tokens)))
}

type identityKey struct{}

// requiredRole is the least role of each procedure; reads need Viewer.
var requiredRole = map[string]Role{
	flotillav1connect.HubServiceListClustersProcedure: Viewer,
	flotillav1connect.HubServiceListAppsProcedure:     Viewer,
	flotillav1connect.HubServiceGetAppProcedure:       Viewer,
}

// authenticate checks the bearer token of every call; read-only calls need
// the viewer role.
func authenticate(tokens []Token) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			presented, ok := strings.CutPrefix(req.Header().Get("Authorization"), "Bearer ")
			if !ok || presented == "" {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no bearer token: pass --token or set FLOTILLA_TOKEN"))
			}
			for _, t := range tokens {
				if subtle.ConstantTimeCompare([]byte(presented), []byte(t.Value)) == 1 {
					if t.Role < requiredRole[req.Spec().Procedure] {
						return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("token %q may not call %s", t.Name, req.Spec().Procedure))
					}
					return next(context.WithValue(ctx, identityKey{}, t.Name), req)
				}
			}
			return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("token not accepted (expired or wrong)"))
		}
	}
}

// ListClusters implements HubService.
func (s *Server) ListClusters(ctx context.Context, _ *connect.Request[flotillav1.ListClustersRequest]) (*connect.Response[flotillav1.ListClustersResponse], error) {
	regs := s.fleet.Clusters()
	slices.SortFunc(regs, func(a, b *flotillav1.ClusterRegistration) int { return strings.Compare(a.GetName(), b.GetName()) })
	resp := &flotillav1.ListClustersResponse{}
	for _, r := range regs {
		resp.Clusters = append(resp.Clusters, &flotillav1.ClusterInfo{
			Registration:  r,
			LastHeartbeat: r.GetHeartbeatAt(),
			Connected:     time.Since(r.GetHeartbeatAt().AsTime()) < s.clusterTTL,
		})
	}
	return connect.NewResponse(resp), nil
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
	for _, c := range s.fleet.Clusters() {
		clusterLabels[c.GetName()] = c.GetLabels()
	}
	apps, err := s.apps(ctx, func(ds *flotillav1.DesiredState) bool {
		if c := req.Msg.GetCluster(); c != "" && ds.GetCluster() != c {
			return false
		}
		return selector.Matches(clusterLabels[ds.GetCluster()])
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&flotillav1.ListAppsResponse{Apps: apps}), nil
}

// GetApp implements HubService.
func (s *Server) GetApp(ctx context.Context, req *connect.Request[flotillav1.GetAppRequest]) (*connect.Response[flotillav1.GetAppResponse], error) {
	apps, err := s.apps(ctx, func(ds *flotillav1.DesiredState) bool { return ds.GetApp() == req.Msg.GetApp() })
	if err != nil {
		return nil, err
	}
	if len(apps) == 0 {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("application %q is not published to any cluster", req.Msg.GetApp()))
	}
	return connect.NewResponse(&flotillav1.GetAppResponse{Apps: apps}), nil
}

// apps joins the published desired states that match with the agents'
// statuses, sorted by cluster and app. Deleted applications are left out.
func (s *Server) apps(ctx context.Context, match func(*flotillav1.DesiredState) bool) ([]*flotillav1.AppInfo, error) {
	statuses, err := s.statuses.Statuses(ctx)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("read statuses: %w", err))
	}
	var out []*flotillav1.AppInfo
	for _, ds := range s.fleet.Published() {
		if ds.GetDeletion() != nil || !match(ds) {
			continue
		}
		out = append(out, &flotillav1.AppInfo{Cluster: ds.GetCluster(), App: ds.GetApp(), Desired: ds, Status: statuses[bus.Key(ds.GetCluster(), ds.GetApp())]})
	}
	slices.SortFunc(out, func(a, b *flotillav1.AppInfo) int {
		return strings.Compare(bus.Key(a.GetCluster(), a.GetApp()), bus.Key(b.GetCluster(), b.GetApp()))
	})
	return out, nil
}
