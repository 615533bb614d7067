package appkey

import (
	"strings"
	"testing"
)

func TestSplitInvertsJoin(t *testing.T) {
	for _, tc := range []struct {
		key          string
		cluster, app string
		ok           bool
	}{
		{key: Join("prod-eu", "api-service"), cluster: "prod-eu", app: "api-service", ok: true},
		{key: Join("prod-eu", "api.v2.payments"), cluster: "prod-eu", app: "api.v2.payments", ok: true},
		{key: "prod-eu.", cluster: "prod-eu", app: "", ok: true},
		{key: "no-dot", ok: false},
		{key: "", ok: false},
	} {
		cluster, app, ok := Split(tc.key)
		if cluster != tc.cluster || app != tc.app || ok != tc.ok {
			t.Errorf("Split(%q) = %q, %q, %t; want %q, %q, %t", tc.key, cluster, app, ok, tc.cluster, tc.app, tc.ok)
		}
	}
	if k := Join("prod-eu", "api.v2"); strings.Count(k, ".") != 1 {
		t.Errorf("the key %q has more than one token separator", k)
	}
}

func TestLongNamesFit(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60)
	other := strings.Repeat("a", 60) + "." + strings.Repeat("c", 60)
	if v := LabelValue(long); len(v) > 63 || v == LabelValue(other) || strings.HasSuffix(strings.TrimSuffix(v, v[len(v)-11:]), ".") {
		t.Errorf("LabelValue(%q) = %q", long, v)
	}
	if v := LabelValue("api-service"); v != "api-service" {
		t.Errorf("a short name changed: %q", v)
	}
	name := strings.Repeat("x", 250)
	if n := ObjectName("flotilla-inventory-", name); len(n) > 253 || !strings.HasPrefix(n, "flotilla-inventory-") {
		t.Errorf("ObjectName = %q (%d)", n, len(n))
	}
}
