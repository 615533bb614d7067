package apply

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestWaitEstablished(t *testing.T) {
	const group = "crd.flotilla.test"
	cases := []struct {
		name string
		// before are CRDs established before create are created.
		before, create []string
		wait           string // the CRD waited for
		timeout        time.Duration
		wantErr        bool
	}{
		{name: "a new CRD is established",
			create: []string{crdManifest(group, "Sprocket", "Namespaced")}, wait: "sprockets." + group, timeout: 30 * time.Second},
		{name: "a CRD that does not exist times out",
			wait: "absents." + group, timeout: time.Second, wantErr: true},
		// Cogs (plural cogss) claims the list kind of Cog, CogList, so the
		// server never accepts its names.
		{name: "a CRD whose names the server refuses times out",
			before: []string{crdManifest(group, "Cog", "Namespaced")},
			create: []string{strings.Replace(crdManifest(group, "Cogs", "Namespaced"), "listKind: CogsList", "listKind: CogList", 1)},
			wait:   "cogss." + group, timeout: time.Second, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range tc.before {
				crd := createCRD(t, m)
				if err := WaitEstablished(t.Context(), cluster.Dynamic, crd, 30*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range tc.create {
				createCRD(t, m)
			}

			err := WaitEstablished(t.Context(), cluster.Dynamic, tc.wait, tc.timeout)

			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				// Established: the server serves the kind.
				plural, _, _ := strings.Cut(tc.wait, ".")
				gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
				if _, err := cluster.Dynamic.Resource(gvr).List(t.Context(), metav1.ListOptions{}); err != nil {
					t.Errorf("list %s after WaitEstablished: %v", gvr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("WaitEstablished(%s) succeeded", tc.wait)
			}
			if !strings.Contains(err.Error(), tc.wait) {
				t.Errorf("error does not name %s: %v", tc.wait, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error is not a timeout: %v", err)
			}
		})
	}
}

// createCRD creates a CRD and returns its name.
func createCRD(t *testing.T, manifest string) string {
	t.Helper()
	crd := decodeOne(t, "", manifest)
	if _, err := cluster.Dynamic.Resource(CRDResource).Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return crd.GetName()
}
