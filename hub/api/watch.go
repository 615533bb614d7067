package api

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// defaultWatchInterval is how often a WatchFleet stream compares the
// fleet with what it last sent.
const defaultWatchInterval = time.Second

// keepAliveAfter is the longest a WatchFleet stream stays silent: it then
// sends an empty message, so that its client (and any proxy between)
// tells a quiet fleet from a lost hub.
const keepAliveAfter = 15 * time.Second

// maxPendingEvents bounds the events a stream holds for a client that
// reads slower than they come. Past it the stream ends, Unavailable: the
// client connects again and reads the events it missed with ListEvents.
const maxPendingEvents = 1000

// maxWatchStreams bounds the WatchFleet streams a hub replica serves at
// once: each compares the whole fleet every second and follows the events.
const maxWatchStreams = 100

// Why a WatchFleet stream is refused or ends.
var (
	errTooManyStreams = fmt.Errorf("this hub replica serves %d fleet streams already: close a dashboard, or try again later", maxWatchStreams)
	errEventsOverflow = fmt.Errorf("over %d events came faster than the stream could send them: connect again and list the events", maxPendingEvents)
)

// WhoAmI implements HubService.
func (s *Server) WhoAmI(ctx context.Context, _ *connect.Request[flotillav1.WhoAmIRequest]) (*connect.Response[flotillav1.WhoAmIResponse], error) {
	t := caller(ctx)
	return connect.NewResponse(&flotillav1.WhoAmIResponse{Name: t.Name, Role: t.Role.String()}), nil
}

// WatchFleet implements HubService: a snapshot of every application in
// every cluster, of the clusters and of the fleet rollouts, then, every
// watchInterval, what changed and the events appended meanwhile, until
// the client goes or the hub stops.
//
// A stream ends, Unauthenticated, when the session it came with does
// (a dashboard then asks to sign in again), and when the hub stops.
func (s *Server) WatchFleet(ctx context.Context, _ *connect.Request[flotillav1.WatchFleetRequest], stream *connect.ServerStream[flotillav1.WatchFleetResponse]) error {
	if s.streams.Add(1) > maxWatchStreams {
		s.streams.Add(-1)
		return connect.NewError(connect.CodeResourceExhausted, errTooManyStreams)
	}
	defer s.streams.Add(-1)
	var sessionEnded <-chan time.Time
	if end := sessionEnd(ctx); !end.IsZero() {
		timer := time.NewTimer(end.Sub(s.now()))
		defer timer.Stop()
		sessionEnded = timer.C
	}
	events := &pendingEvents{}
	if err := s.hub.FollowEvents(ctx, events.add); err != nil {
		return toConnect(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	tick := time.NewTicker(s.watchInterval)
	defer tick.Stop()
	var sent *fleetView
	var sentAt time.Time
	for {
		current, err := s.fleetView(ctx)
		if err != nil {
			return err
		}
		msg := sent.changesTo(current)
		var overflowed bool
		if msg.Events, overflowed = events.take(); overflowed {
			return connect.NewError(connect.CodeUnavailable, errEventsOverflow)
		}
		if now := s.now(); msg.GetSnapshot() || !changeless(msg) || now.Sub(sentAt) >= keepAliveAfter {
			// Sent as of before the send: read after it, the clock could
			// already be past what the client did upon receiving it.
			if err := stream.Send(msg); err != nil {
				return err
			}
			sentAt = now
		}
		sent = current
		select {
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return nil
		case <-sessionEnded:
			return connect.NewError(connect.CodeUnauthenticated, errSessionExpired)
		case <-tick.C:
		}
	}
}

// changeless reports whether msg carries nothing.
func changeless(msg *flotillav1.WatchFleetResponse) bool {
	return len(msg.GetApps())+len(msg.GetRemovedApps())+len(msg.GetClusters())+len(msg.GetRemovedClusters())+len(msg.GetEvents())+
		len(msg.GetFleetRollouts())+len(msg.GetRemovedFleetRollouts()) == 0
}

// fleetView is the fleet as a WatchFleet stream sends it.
type fleetView struct {
	apps     map[string]*flotillav1.FleetApp // by appkey.Join(cluster, app)
	clusters map[string]*flotillav1.ClusterInfo
	// rollouts are the fleet rollouts by fleetRolloutKey.
	rollouts map[string]*flotillav1.FleetRollout
}

// fleetRolloutKey is the key a fleet rollout is sent and removed under:
// "<kind>/<name>", the hub's, under which a newer commit's rollout
// replaces the older one.
func fleetRolloutKey(r *flotillav1.FleetRollout) string {
	return r.GetKind() + "/" + r.GetName()
}

// fleetView is the fleet now.
func (s *Server) fleetView(ctx context.Context) (*fleetView, error) {
	infos, err := s.apps(ctx, func(*flotillav1.DesiredState) bool { return true }, func(string) bool { return true })
	if err != nil {
		return nil, err
	}
	v := &fleetView{apps: make(map[string]*flotillav1.FleetApp, len(infos)), clusters: map[string]*flotillav1.ClusterInfo{},
		rollouts: map[string]*flotillav1.FleetRollout{}}
	for _, a := range infos {
		v.apps[appkey.Join(a.GetCluster(), a.GetApp())] = fleetApp(a)
	}
	for _, c := range s.clusterInfos() {
		v.clusters[c.GetRegistration().GetName()] = c
	}
	for _, r := range s.hub.FleetRollouts() {
		v.rollouts[fleetRolloutKey(r)] = r
	}
	return v, nil
}

// fleetApp is the application a, in the words of `flotilla app list`.
func fleetApp(a *flotillav1.AppInfo) *flotillav1.FleetApp {
	st := a.GetStatus()
	out := &flotillav1.FleetApp{Cluster: a.GetCluster(), App: a.GetApp(), Sync: a.SyncWord(), Refused: a.GetRefused()}
	if a.GetDesired() == nil {
		return out // refused and never published
	}
	out.Health, out.HistoryId, out.Revision = st.HealthWord(), a.GetDesired().GetHistoryId(), a.GetDesired().GetSource().Revision()
	out.Pin, out.OfflineSince, out.Message = a.GetDesired().GetPin(), a.GetOfflineSince(), st.GetMessage()
	out.Rollout, out.RolloutInProgress = st.RolloutSummary(), st.RolloutInProgress()
	out.ReportedAt = st.GetObservedAt()
	if st != nil {
		out.Phase = flotillav1.EnumWord(st.GetPhase().String(), "SYNC_PHASE_")
	}
	return out
}

// changesTo is the message that takes a client holding v to next: all of
// next, as a snapshot, when v is nil.
func (v *fleetView) changesTo(next *fleetView) *flotillav1.WatchFleetResponse {
	msg := &flotillav1.WatchFleetResponse{Snapshot: v == nil}
	if v == nil {
		v = &fleetView{}
	}
	for key, a := range next.apps {
		if before, ok := v.apps[key]; !ok || !proto.Equal(before, a) {
			msg.Apps = append(msg.Apps, a)
		}
	}
	for key, a := range v.apps {
		if _, ok := next.apps[key]; !ok {
			msg.RemovedApps = append(msg.RemovedApps, &flotillav1.FleetApp{Cluster: a.GetCluster(), App: a.GetApp()})
		}
	}
	for name, c := range next.clusters {
		if before, ok := v.clusters[name]; !ok || !proto.Equal(before, c) {
			msg.Clusters = append(msg.Clusters, c)
		}
	}
	for name := range v.clusters {
		if _, ok := next.clusters[name]; !ok {
			msg.RemovedClusters = append(msg.RemovedClusters, name)
		}
	}
	for key, r := range next.rollouts {
		if before, ok := v.rollouts[key]; !ok || !proto.Equal(before, r) {
			msg.FleetRollouts = append(msg.FleetRollouts, r)
		}
	}
	for key := range v.rollouts {
		if _, ok := next.rollouts[key]; !ok {
			msg.RemovedFleetRollouts = append(msg.RemovedFleetRollouts, key)
		}
	}
	byKey := func(a, b *flotillav1.FleetApp) int {
		return strings.Compare(appkey.Join(a.GetCluster(), a.GetApp()), appkey.Join(b.GetCluster(), b.GetApp()))
	}
	slices.SortFunc(msg.Apps, byKey)
	slices.SortFunc(msg.RemovedApps, byKey)
	slices.SortFunc(msg.Clusters, func(a, b *flotillav1.ClusterInfo) int {
		return strings.Compare(a.GetRegistration().GetName(), b.GetRegistration().GetName())
	})
	slices.Sort(msg.RemovedClusters)
	slices.SortFunc(msg.FleetRollouts, func(a, b *flotillav1.FleetRollout) int {
		return strings.Compare(fleetRolloutKey(a), fleetRolloutKey(b))
	})
	slices.Sort(msg.RemovedFleetRollouts)
	return msg
}

// pendingEvents are the events a stream has yet to send, oldest first.
type pendingEvents struct {
	mu         sync.Mutex
	events     []*flotillav1.Event
	overflowed bool
}

// add keeps ev, unless maxPendingEvents are pending: then it notes the
// overflow.
func (p *pendingEvents) add(ev *flotillav1.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) < maxPendingEvents {
		p.events = append(p.events, ev)
	} else {
		p.overflowed = true
	}
}

// take returns the pending events and forgets them, and reports whether
// some were dropped.
func (p *pendingEvents) take() ([]*flotillav1.Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.events
	p.events = nil
	return out, p.overflowed
}
