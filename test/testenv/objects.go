package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Field is the value at fields of obj as fmt.Sprint prints it, or "" when
// there is none: Field(ro, "status", "phase") is "Healthy".
func Field(obj *unstructured.Unstructured, fields ...string) string {
	v, _, _ := unstructured.NestedFieldNoCopy(obj.Object, fields...)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// Image is the image of the first container of obj's pod template
// (spec.template), or "" when it has none.
func Image(obj *unstructured.Unstructured) string {
	containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if len(containers) == 0 {
		return ""
	}
	first, _ := containers[0].(map[string]any)
	img, _, _ := unstructured.NestedString(first, "image")
	return img
}

// WaitImage waits until the object gvr ns/name runs an image ending in
// suffix (Image), and returns it. It follows a watch rather than polling,
// so it returns as soon as the change is written: latency benchmarks
// measure with it.
func (c *Cluster) WaitImage(t TB, gvr schema.GroupVersionResource, ns, name, suffix string, timeout time.Duration) *unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	objects := c.Dynamic.Resource(gvr).Namespace(ns)
	last := "(not found)"
	for {
		obj, err := objects.Get(ctx, name, metav1.GetOptions{})
		resourceVersion := ""
		if err == nil {
			if last = Image(obj); strings.HasSuffix(last, suffix) {
				return obj
			}
			resourceVersion = obj.GetResourceVersion()
		}
		w, err := objects.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: resourceVersion})
		if err == nil {
			for ev := range w.ResultChan() {
				if obj, ok := ev.Object.(*unstructured.Unstructured); ok && obj.GetName() == name {
					if last = Image(obj); strings.HasSuffix(last, suffix) {
						w.Stop()
						return obj
					}
				}
			}
			w.Stop()
		}
		// The watch ended (it expires, or its resource version is too old):
		// read again, unless the time is up.
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: %s %s/%s in %s runs %s after %s, want an image ending in %s", gvr.Resource, ns, name, c.Name, last, timeout, suffix)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// SetImage merge-patches the pod template of the object gvr ns/name to one
// container, named container, running image. A merge patch replaces the
// whole list, so it is for the test objects, which have one container.
func (c *Cluster) SetImage(t TB, gvr schema.GroupVersionResource, ns, name, container, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, container, image)
	if _, err := c.Dynamic.Resource(gvr).Namespace(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("testenv: set the image of %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

// CreateNamespace creates the Namespace name.
func (c *Cluster) CreateNamespace(t TB, name string) {
	t.Helper()
	if _, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testenv: cluster %s: create namespace %s: %v", c.Name, name, err)
	}
}

// FixtureFile reads the file rel of the fixture directory fixture (under
// test/testdata): FixtureFile(t, "gitops-config", "apps/worker-service.yaml").
func FixtureFile(t TB, fixture, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Fixture(t, fixture), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return string(data)
}
