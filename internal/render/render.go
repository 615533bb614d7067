package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Request says what to render.
type Request struct {
	// Root is the directory holding the repository tree, or an unpacked
	// artifact with the same layout. Nothing outside it is ever read.
	Root string
	// Path is the application's directory, relative to Root, slash-separated.
	Path string
	Spec *flotillav1.RenderSpec
	// ReleaseName is Helm's release name when the spec names none; Argo CD
	// uses the application's name.
	ReleaseName string
	// Namespace is the destination namespace (Helm's .Release.Namespace).
	Namespace string
	// KubeVersion and APIVersions fill Helm's .Capabilities; the agent passes
	// its cluster's real discovery, the hub a default.
	KubeVersion string
	APIVersions []string
	// Timeout bounds the render (DefaultTimeout when zero), so a chart that
	// loops fails its application, not the caller.
	Timeout time.Duration
	// Refs are the directories of a multi-source application's ref
	// sources, by ref name: a Helm value file "$name/path" is read from
	// Refs[name], and nothing outside it.
	Refs map[string]string
}

// Manifest is one rendered object and the file it came from.
type Manifest struct {
	Object *unstructured.Unstructured
	// Source is the file (or Helm template) the object came from, relative
	// to Request.Root.
	Source string
}

// Result is what a render produced and what it read.
type Result struct {
	Manifests []Manifest
	// Files are the Root-relative, slash-separated paths of every file the
	// render needs: packing them reproduces the render elsewhere.
	Files []string
	// RefFiles are the files read from Refs, by ref name, relative to the
	// ref's directory.
	RefFiles map[string][]string
}

// Merge concatenates the manifests of a multi-source application's
// renders, in order; an object of the same group, kind, namespace and
// name as an earlier one replaces it, in the earlier one's place, as the
// last source wins in Argo CD.
func Merge(results ...*Result) []Manifest {
	var out []Manifest
	at := map[string]int{}
	for _, r := range results {
		for _, m := range r.Manifests {
			gvk := m.Object.GroupVersionKind()
			key := gvk.Group + "/" + gvk.Kind + "/" + m.Object.GetNamespace() + "/" + m.Object.GetName()
			if i, ok := at[key]; ok {
				out[i] = m
				continue
			}
			at[key] = len(out)
			out = append(out, m)
		}
	}
	return out
}

// Error is a render failure naming the application path and, where known,
// the file.
type Error struct {
	Path   string
	File   string
	Reason string
	Err    error
}

func (e *Error) Error() string {
	where := e.Path
	if e.File != "" {
		where = e.File
	}
	if e.Err != nil {
		return fmt.Sprintf("render %s: %s: %v", where, e.Reason, e.Err)
	}
	return fmt.Sprintf("render %s: %s", where, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Kind is how a source is rendered.
type Kind string

// The kinds of source, detected as Argo CD does when the spec names none.
const (
	KindHelm      Kind = "Helm"
	KindKustomize Kind = "Kustomize"
	KindDirectory Kind = "Directory"
)

// DetectKind says how the source at dir is rendered: an explicit spec wins,
// then a Chart.yaml means Helm, a kustomization file Kustomize, anything
// else a directory of manifests.
func DetectKind(dir string, spec *flotillav1.RenderSpec) Kind {
	switch {
	case spec.GetHelm() != nil:
		return KindHelm
	case spec.GetKustomize() != nil:
		return KindKustomize
	case spec.GetDirectory() != nil:
		return KindDirectory
	case exists(filepath.Join(dir, "Chart.yaml")):
		return KindHelm
	}
	for _, name := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if exists(filepath.Join(dir, name)) {
			return KindKustomize
		}
	}
	return KindDirectory
}

// Render renders the source. A failure returns *Error and no manifests; a
// renderer that panics on its input (Helm, Kustomize) fails this render
// with an *Error, never the process. A render that passes req.Timeout fails
// with an *Error wrapping context.DeadlineExceeded (see runBounded); one
// whose output passes maxRenderSize fails too.
func Render(ctx context.Context, req Request) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(req.Root)
	if err != nil {
		return nil, err
	}
	req.Root = root
	if len(req.Refs) > 0 {
		refs := make(map[string]string, len(req.Refs))
		for name, dir := range req.Refs {
			if refs[name], err = filepath.Abs(dir); err != nil {
				return nil, err
			}
		}
		req.Refs = refs
	}
	dir, err := resolve(root, req.Path)
	if err != nil {
		return nil, &Error{Path: req.Path, Reason: "path escapes the repository", Err: err}
	}
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return nil, &Error{Path: req.Path, Reason: "path does not exist or is not a directory"}
	}
	kind := DetectKind(dir, req.Spec)
	return runBounded(ctx, req, kind, func() (*Result, error) { return renderSource(req, dir, kind) })
}

// maxRenderSize bounds the manifests one render produces. Real applications
// render a few megabytes; more is a template that multiplies its output, and
// the hub and the agent hold all of it in memory. Helm and kustomize build
// their whole output before it can be measured, so this protects what comes
// after them, not the renderers themselves.
const maxRenderSize = 64 << 20

// renderSource renders the source at dir and normalises its objects.
func renderSource(req Request, dir string, kind Kind) (res *Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, &Error{Path: req.Path, Reason: fmt.Sprintf("the renderer failed on this input (internal error: %v)", p)}
		}
	}()
	switch kind {
	case KindHelm:
		res, err = renderHelm(req, dir)
	case KindKustomize:
		res, err = renderKustomize(req, dir)
	default:
		res, err = renderDirectory(req, dir)
	}
	if err != nil {
		return nil, err
	}
	for i, m := range res.Manifests {
		obj, err := jsonCompatible(m.Object.Object)
		if err != nil {
			return nil, &Error{Path: req.Path, File: m.Source, Reason: fmt.Sprintf("%s %s", m.Object.GetKind(), m.Object.GetName()), Err: err}
		}
		res.Manifests[i].Object.Object = obj
	}
	slices.Sort(res.Files)
	res.Files = slices.Compact(res.Files)
	for ref, files := range res.RefFiles {
		slices.Sort(files)
		res.RefFiles[ref] = slices.Compact(files)
	}
	return res, nil
}

// ResolvePath joins a slash-separated relative path to root and refuses one
// that leaves it (through "..", an absolute path or a symlink), as a render
// does.
func ResolvePath(root, rel string) (string, error) { return resolve(root, rel) }

// resolve joins a slash-separated relative path to root and refuses one that
// leaves it (through "..", an absolute path or a symlink).
func resolve(root, rel string) (string, error) {
	if path.IsAbs(rel) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%q is absolute", rel)
	}
	joined := filepath.Join(root, filepath.FromSlash(rel))
	if !within(root, joined) {
		return "", fmt.Errorf("%q leaves the repository", rel)
	}
	real, err := filepath.EvalSymlinks(joined)
	if errors.Is(err, os.ErrNotExist) {
		return joined, nil
	}
	if err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	if !within(realRoot, real) {
		return "", fmt.Errorf("%q links outside the repository", rel)
	}
	return joined, nil
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// relative turns an absolute path under root into a slash path.
func relative(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(rel)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
