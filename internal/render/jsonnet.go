package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-jsonnet"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// maxJsonnetFile bounds one file a jsonnet program reads.
const maxJsonnetFile = 16 << 20

// evaluateJsonnet evaluates one .jsonnet file of a directory source as
// Argo CD does: its top-level arguments and external variables (with
// $ARGOCD_APP_NAME and $ARGOCD_APP_NAMESPACE expanded), imports resolved
// next to the importing file, then in the application's directory, then in
// the libs (relative to the repository's root). Nothing outside the
// repository is read. The output is one object or an array of them. It
// returns the objects and every file read.
func evaluateJsonnet(req Request, dir, file string) ([]*unstructured.Unstructured, []string, error) {
	spec := req.Spec.GetDirectory().GetJsonnet()
	vm := jsonnet.MakeVM()
	env := func(v string) string {
		return os.Expand(v, func(name string) string {
			switch name {
			case "ARGOCD_APP_NAME":
				return req.ReleaseName
			case "ARGOCD_APP_NAMESPACE":
				return req.Namespace
			}
			return "$" + name
		})
	}
	for _, v := range spec.GetTlas() {
		if v.GetCode() {
			vm.TLACode(v.GetName(), env(v.GetValue()))
		} else {
			vm.TLAVar(v.GetName(), env(v.GetValue()))
		}
	}
	for _, v := range spec.GetExtVars() {
		if v.GetCode() {
			vm.ExtCode(v.GetName(), env(v.GetValue()))
		} else {
			vm.ExtVar(v.GetName(), env(v.GetValue()))
		}
	}
	importer := &repoImporter{root: req.Root, paths: []string{filepath.Dir(file), dir}, contents: map[string]jsonnet.Contents{}}
	for _, lib := range spec.GetLibs() {
		p, err := resolve(req.Root, filepath.ToSlash(strings.TrimPrefix(lib, "/")))
		if err != nil {
			return nil, nil, fmt.Errorf("jsonnet.libs %q: %w", lib, err)
		}
		importer.paths = append(importer.paths, p)
	}
	vm.Importer(importer)
	main, _, err := importer.read(file)
	if err != nil {
		return nil, nil, err
	}
	out, err := vm.EvaluateAnonymousSnippet(file, main.String())
	if err != nil {
		return nil, nil, err
	}
	if len(out) > maxRenderSize {
		return nil, nil, fmt.Errorf("the jsonnet output is larger than %d MiB", maxRenderSize>>20)
	}
	objs, err := jsonnetObjects([]byte(out))
	if err != nil {
		return nil, nil, err
	}
	return objs, importer.files, nil
}

// jsonnetObjects reads a jsonnet program's output: one object or an array
// of objects.
func jsonnetObjects(out []byte) ([]*unstructured.Unstructured, error) {
	out = bytes.TrimSpace(out)
	var items []json.RawMessage
	if bytes.HasPrefix(out, []byte("[")) {
		if err := json.Unmarshal(out, &items); err != nil {
			return nil, err
		}
	} else {
		items = []json.RawMessage{out}
	}
	var objs []*unstructured.Unstructured
	for i, item := range items {
		decoded, err := Decode(item)
		if err != nil {
			return nil, fmt.Errorf("output[%d]: %w", i, err)
		}
		objs = append(objs, decoded...)
	}
	return objs, nil
}

// repoImporter is a jsonnet importer confined to the repository: no
// absolute path, nothing through "..", no symlink out of it, no file over
// maxJsonnetFile. It records the files it read.
type repoImporter struct {
	root     string
	paths    []string
	contents map[string]jsonnet.Contents
	files    []string
}

func (r *repoImporter) Import(importedFrom, importedPath string) (jsonnet.Contents, string, error) {
	if path.IsAbs(importedPath) || filepath.IsAbs(importedPath) {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q: absolute paths are not allowed", importedPath)
	}
	var candidates []string
	if filepath.IsAbs(importedFrom) { // the main program's imports come with none
		candidates = append(candidates, filepath.Join(filepath.Dir(importedFrom), importedPath))
	}
	for _, p := range r.paths {
		candidates = append(candidates, filepath.Join(p, importedPath))
	}
	for _, c := range candidates {
		contents, found, err := r.read(c)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		return contents, found, err
	}
	return jsonnet.Contents{}, "", fmt.Errorf("import %q: not found", importedPath)
}

// read reads an absolute path inside the repository, once.
func (r *repoImporter) read(p string) (jsonnet.Contents, string, error) {
	if c, ok := r.contents[p]; ok {
		return c, p, nil
	}
	if _, err := resolve(r.root, relative(r.root, p)); err != nil {
		return jsonnet.Contents{}, "", err
	}
	info, err := os.Stat(p)
	if err != nil {
		return jsonnet.Contents{}, "", err
	}
	if !info.Mode().IsRegular() {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q: not a regular file", relative(r.root, p))
	}
	if info.Size() > maxJsonnetFile {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q: larger than %d MiB", relative(r.root, p), maxJsonnetFile>>20)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return jsonnet.Contents{}, "", err
	}
	c := jsonnet.MakeContentsRaw(data)
	r.contents[p] = c
	r.files = append(r.files, relative(r.root, p))
	return c, p, nil
}
