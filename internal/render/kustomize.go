package render

import (
	"fmt"
	"path/filepath"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// renderKustomize is `kustomize build` with kustomize's own library. Every
// file kustomize reads is recorded, so the artifact holds exactly the bases,
// components and patches the overlay references. Nothing is fetched:
// checkLocal refuses remote references before kustomize runs, as kustomize
// has no option to forbid them; a file read from outside the repository
// (where a clone would land) fails the render after it.
func renderKustomize(req Request, dir string) (*Result, error) {
	fs := &recordingFS{FileSystem: filesys.MakeFsOnDisk()}
	edited, err := overrideKustomization(fs, dir, req.Spec.GetKustomize())
	if err != nil {
		return nil, &Error{Path: req.Path, Reason: "spec.source.kustomize", Err: err}
	}
	if err := checkLocal(req, dir, edited); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	resources, err := krusty.MakeKustomizer(opts).Run(edited, dir)
	if err != nil {
		return nil, &Error{Path: req.Path, Reason: "kustomize build", Err: err}
	}
	res := &Result{}
	size := 0
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, &Error{Path: req.Path, Reason: "kustomize output", Err: err}
		}
		if size += len(data); size > maxRenderSize {
			return nil, &Error{Path: req.Path, Reason: fmt.Sprintf("kustomize output is larger than %d MiB", maxRenderSize>>20)}
		}
		m, err := r.Map()
		if err != nil {
			return nil, &Error{Path: req.Path, Reason: "kustomize output", Err: err}
		}
		obj := &unstructured.Unstructured{Object: m}
		if err := checkObject(obj); err != nil {
			return nil, &Error{Path: req.Path, Reason: "kustomize output", Err: err}
		}
		res.Manifests = append(res.Manifests, Manifest{Object: obj, Source: req.Path})
	}
	for _, p := range fs.read() {
		abs, err := filepath.Abs(p)
		if err != nil || !within(req.Root, abs) {
			return nil, &Error{Path: req.Path, File: p, Reason: "kustomize read a file outside the repository"}
		}
		res.Files = append(res.Files, relative(req.Root, abs))
	}
	return res, nil
}

// recordingFS remembers every file kustomize reads.
type recordingFS struct {
	filesys.FileSystem
	mu    sync.Mutex
	files []string
}

func (f *recordingFS) ReadFile(path string) ([]byte, error) {
	data, err := f.FileSystem.ReadFile(path)
	if err == nil {
		f.mu.Lock()
		f.files = append(f.files, path)
		f.mu.Unlock()
	}
	return data, err
}

func (f *recordingFS) read() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.files...)
}
