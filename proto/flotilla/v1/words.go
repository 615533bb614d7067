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
