package diff

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func secret(data map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "db", "namespace": "prod", "resourceVersion": "7", "managedFields": []any{map[string]any{"manager": "x"}}},
		"data":     data,
	}}
}

func TestSecretValuesNeverAppear(t *testing.T) {
	live := secret(map[string]any{"password": "czNjcjN0LW9sZA==", "user": "YWRtaW4="})
	desired := secret(map[string]any{"password": "czNjcjN0LW5ldw==", "user": "YWRtaW4=", "token": "dG9rZW4="})
	d, err := Object("v1/Secret/prod/db", live, desired)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"czNjcjN0LW9sZA==", "czNjcjN0LW5ldw==", "YWRtaW4=", "dG9rZW4="} {
		if strings.Contains(d, v) {
			t.Errorf("diff shows the secret value %s:\n%s", v, d)
		}
	}
	for _, want := range []string{"-  password: " + masked, "+  password: " + maskedChanged, "+  token: " + masked, "   user: " + masked} {
		if !strings.Contains(d, want+"\n") {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "resourceVersion") || strings.Contains(d, "managedFields") {
		t.Errorf("diff shows bookkeeping:\n%s", d)
	}
	// The inputs are not modified.
	if live.Object["data"].(map[string]any)["password"] != "czNjcjN0LW9sZA==" {
		t.Error("Object changed its input")
	}
}

func TestCreateAndPrune(t *testing.T) {
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "c"}, "data": map[string]any{"k": "v"}}}
	created, err := Object("v1/ConfigMap/c", nil, cm)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(created, "+  k: v") || strings.Contains(created, "\n-") {
		t.Errorf("create diff:\n%s", created)
	}
	pruned, err := Object("v1/ConfigMap/c", cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pruned, "-  k: v") || strings.Contains(pruned, "\n+ ") {
		t.Errorf("prune diff:\n%s", pruned)
	}
}
