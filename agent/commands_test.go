package agent

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestCheckCommandRefusesOtherClustersAndReplays(t *testing.T) {
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		cluster string
		issued  time.Time
		want    string
	}{
		{"fresh", "prod-eu", now.Add(-time.Second), ""},
		{"slightly ahead", "prod-eu", now.Add(30 * time.Second), ""},
		{"another cluster", "prod-us", now, `addressed to cluster "prod-us"`},
		{"replayed", "prod-eu", now.Add(-2 * time.Minute), "replayed"},
		{"far future", "prod-eu", now.Add(5 * time.Minute), "replayed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCommand(&flotillav1.AgentCommand{Cluster: tc.cluster, IssuedAt: timestamppb.New(tc.issued)}, "prod-eu", now)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
