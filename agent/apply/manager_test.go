package apply

import (
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestObjectError(t *testing.T) {
	settings := ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "settings"}
	web := ObjectRef{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"}
	cases := []struct {
		name string
		err  *ObjectError
		want string
	}{
		{name: "the API's repetition of the object is left out",
			err: &ObjectError{Ref: settings, Action: "dry-run", Err: apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "settings",
				field.ErrorList{field.Invalid(field.NewPath("data").Key("not a key!"), "not a key!", "a valid config key must consist of alphanumeric characters")})},
			want: `ConfigMap/shop/settings dry-run failed: data[not a key!]: Invalid value: "not a key!": a valid config key must consist of alphanumeric characters`},
		{name: "a message without the object is kept whole",
			err:  &ObjectError{Ref: settings, Action: "delete", Err: errors.New(`no matches for kind "ConfigMap" in version "v1": the server is starting`)},
			want: `ConfigMap/shop/settings delete failed: no matches for kind "ConfigMap" in version "v1": the server is starting`},
		{name: "the name inside another word is not the object",
			err:  &ObjectError{Ref: web, Action: "apply", Err: errors.New(`admission webhook "webhook.example.com" denied the request: replicas must be at most 10`)},
			want: `Deployment.apps/shop/web apply failed: admission webhook "webhook.example.com" denied the request: replicas must be at most 10`},
		{name: "an object without a name yet (generateName) keeps the whole message",
			err:  &ObjectError{Ref: ObjectRef{Group: "batch", Version: "v1", Kind: "Job", Namespace: "shop"}, Action: "create hook", Err: errors.New(`admission webhook "jobs.example.com" denied the request: no image tag`)},
			want: `Job.batch/shop/ create hook failed: admission webhook "jobs.example.com" denied the request: no image tag`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() =\n%s\nwant\n%s", got, tc.want)
			}
			if !errors.Is(tc.err, tc.err.Err) {
				t.Error("the ObjectError does not unwrap to its cause")
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	objs := decode(t, "", `
apiVersion: v1
kind: ConfigMap
metadata: {name: defaulted}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kept, namespace: elsewhere}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cluster-scoped, namespace: stray}
---
apiVersion: normalize.flotilla.test/v1
kind: Unknown
metadata: {name: unknown}
`)
	want := []string{"shop", "elsewhere", "", ""}

	manager.Normalize(objs, "shop")

	for i, o := range objs {
		if o.GetNamespace() != want[i] {
			t.Errorf("%s/%s: namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), want[i])
		}
	}
}
