package render

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A Kustomize render hands back kyaml's int values; every object must
// still DeepCopy (it panicked with "cannot deep copy int" before) and keep
// its numbers.
func TestKustomizeOutputIsJSONCompatible(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "resources: [deploy.yaml, hook.yaml]\n")
	write("deploy.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  template:
    spec:
      containers: [{name: web, image: web:1, ports: [{containerPort: 8080}], resources: {limits: {cpu: 0.5}}}]
`)
	write("hook.yaml", `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {argocd.argoproj.io/hook: PreSync}
spec:
  backoffLimit: 2
  template: {spec: {restartPolicy: Never, containers: [{name: m, image: m:1}]}}
`)
	res, err := Render(context.Background(), Request{Root: root, Path: "."})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Manifests) != 2 {
		t.Fatalf("rendered %d objects, want 2", len(res.Manifests))
	}
	for _, m := range res.Manifests {
		c := m.Object.DeepCopy() // panics on a non-JSON type
		if c.GetKind() == "Deployment" {
			if got := c.Object["spec"].(map[string]any)["replicas"]; got != int64(3) {
				t.Errorf("spec.replicas = %#v, want int64(3)", got)
			}
		}
	}
}

func TestJSONCompatible(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]any
		want    map[string]any
		wantErr string
	}{
		{
			name: "integers of every width become int64, floats float64",
			in:   map[string]any{"a": 1, "b": int32(2), "c": uint16(3), "d": float32(0.5), "e": json.Number("7"), "f": json.Number("1.5")},
			want: map[string]any{"a": int64(1), "b": int64(2), "c": int64(3), "d": float64(0.5), "e": int64(7), "f": 1.5},
		},
		{
			name: "nested maps and lists, map[any]any keys become strings",
			in:   map[string]any{"spec": map[any]any{"ports": []any{map[string]any{"port": 80}}}},
			want: map[string]any{"spec": map[string]any{"ports": []any{map[string]any{"port": int64(80)}}}},
		},
		{
			name: "typed slices go through JSON",
			in:   map[string]any{"args": []string{"a", "b"}, "n": []int{1}},
			want: map[string]any{"args": []any{"a", "b"}, "n": []any{int64(1)}},
		},
		{
			name:    "a key that is no string names its field",
			in:      map[string]any{"metadata": map[any]any{1: "x"}},
			wantErr: "metadata: key 1 is not a string",
		},
		{
			name:    "an unsigned integer beyond int64 names its field",
			in:      map[string]any{"spec": map[string]any{"big": uint64(math.MaxUint64)}},
			wantErr: "spec.big: 18446744073709551615 does not fit",
		},
		{
			name:    "a function is no JSON value",
			in:      map[string]any{"spec": map[string]any{"list": []any{func() {}}}},
			wantErr: "spec.list[0]: a func() is not a JSON value",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jsonCompatible(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
