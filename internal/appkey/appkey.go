package appkey

import "strings"

// Join is the key of app in cluster. Both are DNS labels, so the key has
// exactly one dot.
func Join(cluster, app string) string { return cluster + "." + app }

// Split is the inverse of Join. ok is false for a key without a dot.
func Split(key string) (cluster, app string, ok bool) {
	cluster, app, ok = strings.Cut(key, ".")
	if !ok {
		return "", "", false
	}
	return cluster, app, true
}
