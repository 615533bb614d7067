package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// client is a HubService client of url presenting authorization (a whole
// Authorization header value; "" sends none).
func client(url, authorization string) flotillav1connect.HubServiceClient {
	headers := withHeaders{}
	if authorization != "" {
		headers["Authorization"] = authorization
	}
	return flotillav1connect.NewHubServiceClient(&http.Client{Transport: headers}, url)
}

func bearer(token string) string { return "Bearer " + token }

// procedure is one HubService call with a valid request for the fleet.
type procedure struct {
	name string
	need api.Role
	call func(context.Context, flotillav1connect.HubServiceClient) error
}

func procedures() []procedure {
	return []procedure{
		{"ListClusters", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.ListClusters(ctx, connect.NewRequest(&flotillav1.ListClustersRequest{}))
			return err
		}},
		{"AddCluster", api.Admin, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.AddCluster(ctx, connect.NewRequest(&flotillav1.AddClusterRequest{Name: "prod-us", Labels: map[string]string{"env": "production"}}))
			return err
		}},
		{"LabelCluster", api.Admin, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.LabelCluster(ctx, connect.NewRequest(&flotillav1.LabelClusterRequest{Name: "prod-eu", Labels: map[string]string{"env": "staging"}}))
			return err
		}},
		{"RevokeCluster", api.Admin, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RevokeCluster(ctx, connect.NewRequest(&flotillav1.RevokeClusterRequest{Name: "prod-eu"}))
			return err
		}},
		{"ListApps", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{}))
			return err
		}},
		{"GetApp", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetApp(ctx, connect.NewRequest(&flotillav1.GetAppRequest{App: "api-service"}))
			return err
		}},
		{"GetAppHistory", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetAppHistory(ctx, connect.NewRequest(&flotillav1.GetAppHistoryRequest{App: "api-service"}))
			return err
		}},
		{"DiffApp", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.DiffApp(ctx, connect.NewRequest(&flotillav1.DiffAppRequest{App: "api-service"}))
			return err
		}},
		{"ListEvents", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.ListEvents(ctx, connect.NewRequest(&flotillav1.ListEventsRequest{}))
			return err
		}},
		{"SyncApp", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"}))
			return err
		}},
		{"RollbackApp", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RollbackApp(ctx, connect.NewRequest(&flotillav1.RollbackAppRequest{App: "api-service", HistoryId: 5, Cluster: "prod-eu"}))
			return err
		}},
		{"RevertApp", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RevertApp(ctx, connect.NewRequest(&flotillav1.RevertAppRequest{App: "api-service"}))
			return err
		}},
		{"UnpinApp", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.UnpinApp(ctx, connect.NewRequest(&flotillav1.UnpinAppRequest{App: "api-service"}))
			return err
		}},
		{"RolloutApp", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{App: "api-service", Action: flotillav1.RolloutAction_ROLLOUT_ACTION_PAUSE}))
			return err
		}},
		{"GetFleetRollout", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetFleetRollout(ctx, connect.NewRequest(&flotillav1.GetFleetRolloutRequest{Name: "api-service"}))
			return err
		}},
		{"PromoteFleetRollout", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.PromoteFleetRollout(ctx, connect.NewRequest(&flotillav1.PromoteFleetRolloutRequest{Name: "api-service"}))
			return err
		}},
		{"AbortFleetRollout", api.Operator, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.AbortFleetRollout(ctx, connect.NewRequest(&flotillav1.AbortFleetRolloutRequest{Name: "api-service", Rollback: true}))
			return err
		}},
		{"WhoAmI", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.WhoAmI(ctx, connect.NewRequest(&flotillav1.WhoAmIRequest{}))
			return err
		}},
		{"WatchFleet", api.Viewer, func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			stream, err := c.WatchFleet(ctx, connect.NewRequest(&flotillav1.WatchFleetRequest{}))
			if err != nil {
				return err
			}
			defer stream.Close()
			if !stream.Receive() {
				return stream.Err()
			}
			return nil
		}},
	}
}

// TestProceduresCoverTheService keeps the authentication tests below
// honest: a procedure added to HubService must be listed, with its role.
func TestProceduresCoverTheService(t *testing.T) {
	var service, listed []string
	methods := flotillav1.File_flotilla_v1_hub_service_proto.Services().ByName("HubService").Methods()
	for i := range methods.Len() {
		service = append(service, string(methods.Get(i).Name()))
	}
	for _, p := range procedures() {
		listed = append(listed, p.name)
	}
	if diff := cmp.Diff(service, listed); diff != "" {
		t.Errorf("HubService procedures (-service +tested):\n%s", diff)
	}
}

func TestAuthentication(t *testing.T) {
	tests := []struct {
		name          string
		authorization string
		role          api.Role // 0: no token accepted
		wantMessage   string   // when not allowed at all
	}{
		{name: "no token", authorization: "", wantMessage: "no bearer token: pass --token or set FLOTILLA_TOKEN"},
		{name: "empty bearer", authorization: "Bearer ", wantMessage: "no bearer token: pass --token or set FLOTILLA_TOKEN"},
		{name: "not a bearer token", authorization: "Basic " + apitest.OperatorToken, wantMessage: "no bearer token: pass --token or set FLOTILLA_TOKEN"},
		{name: "wrong token", authorization: bearer("guessed"), wantMessage: "token not accepted (expired or wrong)"},
		{name: "a prefix of a token", authorization: bearer(apitest.OperatorToken[:4]), wantMessage: "token not accepted (expired or wrong)"},
		{name: "viewer", authorization: bearer(apitest.ViewerToken), role: api.Viewer},
		{name: "operator", authorization: bearer(apitest.OperatorToken), role: api.Operator},
		{name: "admin", authorization: bearer(apitest.AdminToken), role: api.Admin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			names := map[api.Role]string{api.Viewer: "vera", api.Operator: "otto", api.Admin: "ada"}
			for _, p := range procedures() {
				t.Run(p.name, func(t *testing.T) {
					hub := apitest.Fleet(time.Now())
					c := client(apitest.Serve(t, hub), tc.authorization)
					err := p.call(t.Context(), c)
					var want string
					switch {
					case tc.role == 0:
						want = "unauthenticated: " + tc.wantMessage
					case tc.role < p.need:
						want = fmt.Sprintf("permission_denied: token %q may not call /flotilla.v1.HubService/%s", names[tc.role], p.name)
					}
					if diff := cmp.Diff(want, errorString(err)); diff != "" {
						t.Fatalf("error (-want +got):\n%s", diff)
					}
					if want != "" && len(hub.Calls()) > 0 {
						t.Errorf("a refused call reached the hub: %v", hub.Calls())
					}
				})
			}
		})
	}
}

// errorString is the code and message of a Connect error, "" for none.
func errorString(err error) string {
	if err == nil {
		return ""
	}
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return cerr.Code().String() + ": " + cerr.Message()
	}
	return err.Error()
}

func TestReads(t *testing.T) {
	now := time.Now()
	fleet := apitest.Fleet(now)
	c := client(apitest.Serve(t, fleet), bearer(apitest.ViewerToken))
	desired := func(cluster, app string) *flotillav1.DesiredState {
		for _, ds := range fleet.Desired {
			if ds.GetCluster() == cluster && ds.GetApp() == app {
				return ds
			}
		}
		t.Fatalf("the fleet has no %s/%s", cluster, app)
		return nil
	}
	status := func(cluster, app string) *flotillav1.AppStatus {
		for _, st := range fleet.Status {
			if st.GetCluster() == cluster && st.GetApp() == app {
				return st
			}
		}
		return nil
	}
	app := func(cluster, app string) *flotillav1.AppInfo {
		info := &flotillav1.AppInfo{Cluster: cluster, App: app, Desired: desired(cluster, app), Status: status(cluster, app)}
		if cluster == "staging-1" {
			// Its last heartbeat was two hours ago: its apps carry when it
			// went offline; prod-eu's, five seconds ago, is alive.
			info.OfflineSince = fleet.Registrations[0].GetHeartbeatAt()
		}
		return info
	}
	prodEU, staging := fleet.Registrations[1], fleet.Registrations[0]

	tests := []struct {
		name string
		call func(context.Context) (proto.Message, error)
		want proto.Message
	}{{
		name: "ListClusters sorts by name and tells the connected ones",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListClusters(ctx, connect.NewRequest(&flotillav1.ListClustersRequest{})))
		},
		want: &flotillav1.ListClustersResponse{Clusters: []*flotillav1.ClusterInfo{
			{Registration: prodEU, LastHeartbeat: prodEU.GetHeartbeatAt(), Connected: true},
			{Registration: staging, LastHeartbeat: staging.GetHeartbeatAt(), Connected: false},
		}},
	}, {
		name: "ListApps joins desired states and statuses, sorted, without removed apps",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{})))
		},
		want: &flotillav1.ListAppsResponse{Apps: []*flotillav1.AppInfo{
			app("prod-eu", "api-service"), app("prod-eu", "worker-service"), app("staging-1", "api-service"),
		}},
	}, {
		name: "ListApps of one cluster",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{Cluster: "staging-1"})))
		},
		want: &flotillav1.ListAppsResponse{Apps: []*flotillav1.AppInfo{app("staging-1", "api-service")}},
	}, {
		name: "ListApps of the clusters a selector matches",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{Selector: "env in (production),region"})))
		},
		want: &flotillav1.ListAppsResponse{Apps: []*flotillav1.AppInfo{app("prod-eu", "api-service"), app("prod-eu", "worker-service")}},
	}, {
		name: "ListApps of a selector nothing matches",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{Selector: "env=dev"})))
		},
		want: &flotillav1.ListAppsResponse{},
	}, {
		name: "GetApp in every cluster it targets",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.GetApp(ctx, connect.NewRequest(&flotillav1.GetAppRequest{App: "api-service"})))
		},
		want: &flotillav1.GetAppResponse{Apps: []*flotillav1.AppInfo{app("prod-eu", "api-service"), app("staging-1", "api-service")}},
	}, {
		name: "GetAppHistory of one cluster",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.GetAppHistory(ctx, connect.NewRequest(&flotillav1.GetAppHistoryRequest{App: "api-service", Cluster: "staging-1"})))
		},
		want: &flotillav1.GetAppHistoryResponse{Entries: fleet.HistoryEntries[3:]},
	}, {
		name: "DiffApp asks every cluster",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.DiffApp(ctx, connect.NewRequest(&flotillav1.DiffAppRequest{App: "api-service"})))
		},
		want: &flotillav1.DiffAppResponse{Clusters: []*flotillav1.ClusterDiff{
			{Cluster: "prod-eu", HistoryId: 7, Diffs: fleet.Diffs["prod-eu/api-service"]},
			{Cluster: "staging-1", HistoryId: 3},
		}},
	}, {
		name: "ListEvents of one application",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListEvents(ctx, connect.NewRequest(&flotillav1.ListEventsRequest{App: "api-service"})))
		},
		want: &flotillav1.ListEventsResponse{Events: fleet.EventLog[1:]},
	}, {
		name: "ListEvents, the newest one",
		call: func(ctx context.Context) (proto.Message, error) {
			return msg(c.ListEvents(ctx, connect.NewRequest(&flotillav1.ListEventsRequest{Limit: 1})))
		},
		want: &flotillav1.ListEventsResponse{Events: fleet.EventLog[2:]},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

// msg is a response's message, or its error.
func msg[T any](resp *connect.Response[T], err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return any(resp.Msg).(proto.Message), nil
}

func TestOperations(t *testing.T) {
	tests := []struct {
		name      string
		call      func(context.Context, flotillav1connect.HubServiceClient) (proto.Message, error)
		want      proto.Message
		wantCalls []apitest.Call
	}{{
		name: "SyncApp in every cluster",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			return msg(c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"})))
		},
		want: &flotillav1.SyncAppResponse{Clusters: []*flotillav1.ClusterResult{
			{Cluster: "prod-eu", HistoryId: 7}, {Cluster: "staging-1", HistoryId: 3},
		}},
		wantCalls: []apitest.Call{{Method: "Sync", App: "api-service", Actor: "otto"}},
	}, {
		name: "RollbackApp in one cluster",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			return msg(c.RollbackApp(ctx, connect.NewRequest(&flotillav1.RollbackAppRequest{App: "api-service", HistoryId: 5, Cluster: "prod-eu"})))
		},
		want:      &flotillav1.RollbackAppResponse{Clusters: []*flotillav1.ClusterResult{{Cluster: "prod-eu", HistoryId: 8}}},
		wantCalls: []apitest.Call{{Method: "Rollback", App: "api-service", Cluster: "prod-eu", HistoryID: 5, Actor: "otto"}},
	}, {
		name: "RevertApp in Git",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			return msg(c.RevertApp(ctx, connect.NewRequest(&flotillav1.RevertAppRequest{App: "api-service"})))
		},
		want:      apitest.Fleet(time.Now()).Reverted,
		wantCalls: []apitest.Call{{Method: "Revert", App: "api-service", Actor: "otto"}},
	}, {
		name: "UnpinApp where it is pinned",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			return msg(c.UnpinApp(ctx, connect.NewRequest(&flotillav1.UnpinAppRequest{App: "api-service"})))
		},
		want:      &flotillav1.UnpinAppResponse{Clusters: []*flotillav1.ClusterResult{{Cluster: "prod-eu", HistoryId: 8}}},
		wantCalls: []apitest.Call{{Method: "Unpin", App: "api-service", Actor: "otto"}},
	}, {
		name: "RolloutApp promote --full in one cluster",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			return msg(c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{App: "api-service", Cluster: "prod-eu",
				Action: flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE, Full: true})))
		},
		want: &flotillav1.RolloutAppResponse{Clusters: []*flotillav1.ClusterResult{
			{Cluster: "prod-eu", HistoryId: 7, Objects: []string{"Rollout/api/api-service"}},
		}},
		wantCalls: []apitest.Call{{Method: "Rollout", App: "api-service", Cluster: "prod-eu", Actor: "otto",
			Action: flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE, Full: true}},
	}, {
		name: "DiffApp names who asked",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			return msg(c.DiffApp(ctx, connect.NewRequest(&flotillav1.DiffAppRequest{App: "worker-service"})))
		},
		want:      &flotillav1.DiffAppResponse{Clusters: []*flotillav1.ClusterDiff{{Cluster: "prod-eu", HistoryId: 2}}},
		wantCalls: []apitest.Call{{Method: "Diff", App: "worker-service", Actor: "otto"}},
	}, {
		name: "ListEvents asks for any cluster and app, the newest 100",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			_, err := c.ListEvents(ctx, connect.NewRequest(&flotillav1.ListEventsRequest{}))
			return &flotillav1.ListEventsResponse{}, err // the events themselves: TestReads
		},
		want:      &flotillav1.ListEventsResponse{},
		wantCalls: []apitest.Call{{Method: "Events", Cluster: "*", App: "*", Limit: 100}},
	}, {
		name: "ListEvents passes its filters and limit on",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) (proto.Message, error) {
			_, err := c.ListEvents(ctx, connect.NewRequest(&flotillav1.ListEventsRequest{Cluster: "prod-eu", App: "api-service", Limit: 20}))
			return &flotillav1.ListEventsResponse{}, err
		},
		want:      &flotillav1.ListEventsResponse{},
		wantCalls: []apitest.Call{{Method: "Events", Cluster: "prod-eu", App: "api-service", Limit: 20}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub := apitest.Fleet(time.Now())
			c := client(apitest.Serve(t, hub), bearer(apitest.OperatorToken))
			got, err := tc.call(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCalls, hub.Calls()); diff != "" {
				t.Errorf("calls to the hub (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	unavailable := fmt.Errorf("%w: nats: timeout", api.ErrUnavailable)
	tests := []struct {
		name   string
		errors map[string]error // set on the hub
		call   func(context.Context, flotillav1connect.HubServiceClient) error
		want   string
	}{{
		name: "a selector that does not parse",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{Selector: "env in (("}))
			return err
		},
		want: "invalid_argument: selector: unable to parse requirement: found '(', expected: ',', ')' or identifier",
	}, {
		name: "an application published nowhere",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetApp(ctx, connect.NewRequest(&flotillav1.GetAppRequest{App: "nope"}))
			return err
		},
		want: `not_found: application "nope" is not published to any cluster`,
	}, {
		name: "a removed application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetApp(ctx, connect.NewRequest(&flotillav1.GetAppRequest{App: "old-service"}))
			return err
		},
		want: `not_found: application "old-service" is not published to any cluster`,
	}, {
		name: "the history of no application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetAppHistory(ctx, connect.NewRequest(&flotillav1.GetAppHistoryRequest{}))
			return err
		},
		want: "invalid_argument: an application name is required",
	}, {
		name: "the history of an application in a cluster it is not in",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.GetAppHistory(ctx, connect.NewRequest(&flotillav1.GetAppHistoryRequest{App: "worker-service", Cluster: "staging-1"}))
			return err
		},
		want: `not_found: not found: application "worker-service" is not published to cluster "staging-1"`,
	}, {
		name: "a diff of no application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.DiffApp(ctx, connect.NewRequest(&flotillav1.DiffAppRequest{Cluster: "prod-eu"}))
			return err
		},
		want: "invalid_argument: an application name is required",
	}, {
		name: "a sync of no application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{}))
			return err
		},
		want: "invalid_argument: an application name is required",
	}, {
		name: "a rollback without a history id",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RollbackApp(ctx, connect.NewRequest(&flotillav1.RollbackAppRequest{App: "api-service"}))
			return err
		},
		want: "invalid_argument: a history id is required (see flotilla app history)",
	}, {
		name: "a rollback to an id some cluster does not retain",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RollbackApp(ctx, connect.NewRequest(&flotillav1.RollbackAppRequest{App: "api-service", HistoryId: 5}))
			return err
		},
		want: "not_found: not found: history id 5 of api-service is not retained in cluster(s) staging-1",
	}, {
		name: "a revert of no application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RevertApp(ctx, connect.NewRequest(&flotillav1.RevertAppRequest{}))
			return err
		},
		want: "invalid_argument: an application name is required",
	}, {
		name: "an unpin of an application that is not pinned",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.UnpinApp(ctx, connect.NewRequest(&flotillav1.UnpinAppRequest{App: "worker-service"}))
			return err
		},
		want: "failed_precondition: not possible now: worker-service is not pinned",
	}, {
		name: "an unpin of no application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.UnpinApp(ctx, connect.NewRequest(&flotillav1.UnpinAppRequest{Cluster: "prod-eu"}))
			return err
		},
		want: "invalid_argument: an application name is required",
	}, {
		name: "a rollout of no application",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{Action: flotillav1.RolloutAction_ROLLOUT_ACTION_ABORT}))
			return err
		},
		want: "invalid_argument: an application name is required",
	}, {
		name: "a rollout without an action",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{App: "api-service"}))
			return err
		},
		want: "invalid_argument: an action is required: promote, abort, retry or pause",
	}, {
		name: "a full abort",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{App: "api-service",
				Action: flotillav1.RolloutAction_ROLLOUT_ACTION_ABORT, Full: true}))
			return err
		},
		want: "invalid_argument: full goes with promote only",
	}, {
		name:   "statuses that cannot be read",
		errors: map[string]error{"Statuses": errors.New("nats: timeout")},
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.ListApps(ctx, connect.NewRequest(&flotillav1.ListAppsRequest{}))
			return err
		},
		want: "unavailable: read statuses: nats: timeout",
	}, {
		name:   "events that cannot be read",
		errors: map[string]error{"Events": errors.New("nats: timeout")},
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.ListEvents(ctx, connect.NewRequest(&flotillav1.ListEventsRequest{}))
			return err
		},
		want: "unavailable: unavailable: read events: nats: timeout",
	}, {
		name:   "a hub that is unavailable",
		errors: map[string]error{"Sync": unavailable},
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"}))
			return err
		},
		want: "unavailable: unavailable: nats: timeout",
	}, {
		name:   "a revert that conflicts",
		errors: map[string]error{"Revert": fmt.Errorf("%w: the revert conflicts", api.ErrFailedPrecondition)},
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RevertApp(ctx, connect.NewRequest(&flotillav1.RevertAppRequest{App: "api-service"}))
			return err
		},
		want: "failed_precondition: not possible now: the revert conflicts",
	}, {
		name:   "agents that did not answer in time",
		errors: map[string]error{"Rollout": fmt.Errorf("ask prod-eu: %w", context.DeadlineExceeded)},
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{App: "api-service", Action: flotillav1.RolloutAction_ROLLOUT_ACTION_PAUSE}))
			return err
		},
		want: "deadline_exceeded: ask prod-eu: context deadline exceeded",
	}, {
		name:   "anything else",
		errors: map[string]error{"Unpin": errors.New("disk full")},
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.UnpinApp(ctx, connect.NewRequest(&flotillav1.UnpinAppRequest{App: "api-service"}))
			return err
		},
		want: "internal: disk full",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub := apitest.Fleet(time.Now())
			hub.Errors = tc.errors
			err := tc.call(t.Context(), client(apitest.Serve(t, hub), bearer(apitest.OperatorToken)))
			if diff := cmp.Diff(tc.want, errorString(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	tests := []struct {
		name          string
		authorization string
		call          func(context.Context, flotillav1connect.HubServiceClient) error
		want          []*flotillav1.Event
	}{{
		name:          "an operator's sync",
		authorization: bearer(apitest.OperatorToken),
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service", Cluster: "prod-eu"}))
			return err
		},
		want: []*flotillav1.Event{{Type: flotillav1.EventType_EVENT_TYPE_NORMAL, Reason: "Audit", Actor: "otto", Source: "api",
			Cluster: "prod-eu", App: "api-service", Message: `otto SyncApp {"app":"api-service","cluster":"prod-eu"}: ok`}},
	}, {
		name:          "an operator's rollback that fails",
		authorization: bearer(apitest.OperatorToken),
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RollbackApp(ctx, connect.NewRequest(&flotillav1.RollbackAppRequest{App: "api-service", HistoryId: 99}))
			return err
		},
		want: []*flotillav1.Event{{Type: flotillav1.EventType_EVENT_TYPE_WARNING, Reason: "Audit", Actor: "otto", Source: "api",
			App: "api-service", Message: `otto RollbackApp {"app":"api-service","historyId":"99"}: not_found: ` +
				`not found: history id 99 of api-service is not retained in cluster(s) prod-eu, staging-1`}},
	}, {
		name:          "a viewer's revert, refused",
		authorization: bearer(apitest.ViewerToken),
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RevertApp(ctx, connect.NewRequest(&flotillav1.RevertAppRequest{App: "api-service"}))
			return err
		},
		want: []*flotillav1.Event{{Type: flotillav1.EventType_EVENT_TYPE_WARNING, Reason: "Audit", Actor: "vera", Source: "api",
			App: "api-service", Message: `vera RevertApp {"app":"api-service"}: permission_denied: token "vera" may not call /flotilla.v1.HubService/RevertApp`}},
	}, {
		name: "a rollout without a token is not audited",
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.RolloutApp(ctx, connect.NewRequest(&flotillav1.RolloutAppRequest{App: "api-service", Cluster: "prod-eu",
				Action: flotillav1.RolloutAction_ROLLOUT_ACTION_ABORT}))
			return err
		},
		// Refused before its body is read: nothing of it reaches the stream.
	}, {
		name:          "a sync with a wrong token is not audited",
		authorization: bearer("guessed"),
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			_, err := c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"}))
			return err
		},
	}, {
		name:          "reads are not audited",
		authorization: bearer(apitest.AdminToken),
		call: func(ctx context.Context, c flotillav1connect.HubServiceClient) error {
			for _, p := range procedures() {
				if p.need == api.Viewer {
					if err := p.call(ctx, c); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub := apitest.Fleet(time.Now())
			_ = tc.call(t.Context(), client(apitest.Serve(t, hub), tc.authorization))
			got := hub.Audits()
			for _, ev := range got {
				ev.Message = compactJSON(t, ev.GetMessage())
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
		})
	}
}

// compactJSON removes the spaces protojson may put into the request an
// audit message quotes (its output is deliberately unstable).
func compactJSON(t *testing.T, message string) string {
	start, end := strings.Index(message, "{"), strings.Index(message, "}: ")
	if start < 0 || end < start {
		return message
	}
	var b bytes.Buffer
	b.WriteString(message[:start])
	if err := json.Compact(&b, []byte(message[start:end+1])); err != nil {
		t.Fatalf("audit message %q: %v", message, err)
	}
	b.WriteString(message[end+1:])
	return b.String()
}
