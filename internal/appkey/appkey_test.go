package appkey

import "testing"

func TestSplitInvertsJoin(t *testing.T) {
	for _, tc := range []struct {
		key          string
		cluster, app string
		ok           bool
	}{
		{key: Join("prod-eu", "api-service"), cluster: "prod-eu", app: "api-service", ok: true},
		// Only the first dot separates: an app name never has one, a
		// malformed key keeps the rest in the app.
		{key: "prod-eu.api.v2", cluster: "prod-eu", app: "api.v2", ok: true},
		{key: "prod-eu.", cluster: "prod-eu", app: "", ok: true},
		{key: "no-dot", ok: false},
		{key: "", ok: false},
	} {
		cluster, app, ok := Split(tc.key)
		if cluster != tc.cluster || app != tc.app || ok != tc.ok {
			t.Errorf("Split(%q) = %q, %q, %t; want %q, %q, %t", tc.key, cluster, app, ok, tc.cluster, tc.app, tc.ok)
		}
	}
}
