package flotillav1

import "strings"

// EnumWord is an enum value as the CLI and the hub's messages show it:
// SYNC_STATUS_OUT_OF_SYNC with prefix SYNC_STATUS_ is "OutOfSync".
func EnumWord(s, prefix string) string {
	parts := strings.Split(strings.ToLower(strings.TrimPrefix(s, prefix)), "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// SyncWord is the application's sync as `flotilla app list` and the
// dashboard show it: Refused when the hub refuses it and never published
// it, Unknown before its agent's first report, OutOfSync while the agent
// has not reported the newest desired state, its status's word otherwise.
func (a *AppInfo) SyncWord() string {
	st := a.GetStatus()
	switch {
	case a.GetDesired() == nil:
		return "Refused"
	case st == nil:
		return "Unknown"
	case st.GetHistoryId() != a.GetDesired().GetHistoryId():
		return "OutOfSync"
	}
	return EnumWord(st.GetSyncStatus().String(), "SYNC_STATUS_")
}

// HealthWord is the health the agent last reported, Unknown before its
// first report.
func (s *AppStatus) HealthWord() string {
	if s == nil {
		return "Unknown"
	}
	return EnumWord(s.GetHealth().String(), "HEALTH_STATUS_")
}

// Revision is what a desired state was published for, as Argo CD shows
// it: a chart's version (with the commit of its Application), else the
// commit; commits cut to 8 characters.
func (s *Source) Revision() string {
	commit := s.GetCommit()
	if len(commit) > 8 {
		commit = commit[:8]
	}
	if v := s.GetChartVersion(); v != "" {
		return v + " (" + commit + ")"
	}
	return commit
}
