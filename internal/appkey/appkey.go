package appkey

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Token is an application name as one token of a NATS subject or KV key:
// its dots, which an Application name may have (a DNS-1123 subdomain),
// become underscores, which no such name has, so the token maps back to
// the name unambiguously. A name without dots is its own token.
func Token(app string) string { return strings.ReplaceAll(app, ".", "_") }

// FromToken is the application name a Token stands for.
func FromToken(token string) string { return strings.ReplaceAll(token, "_", ".") }

// Join is the key of an application in a cluster: "<cluster>.<Token(app)>".
func Join(cluster, app string) string { return cluster + "." + Token(app) }

// Split inverts Join: the cluster is up to the first dot (a cluster name
// is a DNS label, without one), the application is the rest.
func Split(key string) (cluster, app string, ok bool) {
	cluster, token, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", false
	}
	return cluster, FromToken(token), true
}

// maxLabelValue is Kubernetes' limit on a label value.
const maxLabelValue = 63

// LabelValue is an application name as a Kubernetes label value: the name
// itself when it fits in 63 characters, else its first 52 and a hash of
// the whole, so two long names never share a value.
func LabelValue(app string) string { return fit(app, maxLabelValue) }

// ObjectName is prefix + the application name as a Kubernetes object name
// (at most 253 characters), shortened with a hash of the name when longer.
func ObjectName(prefix, app string) string { return prefix + fit(app, 253-len(prefix)) }

// fit shortens s to max with a hash of s, keeping it a valid name.
func fit(s string, max int) string {
	if len(s) <= max {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	suffix := "-" + hex.EncodeToString(sum[:5])
	return strings.TrimRight(s[:max-len(suffix)], ".-") + suffix
}
