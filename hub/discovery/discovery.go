package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/render"
)

// Root is where discovery starts: a path in a repository whose Applications
// the hub publishes to the clusters the selector picks.
type Root struct {
	Name     string
	RepoURL  string
	Path     string
	Revision string
	// Clusters selects the clusters of Applications whose destination is
	// the in-cluster server.
	Clusters labels.Selector
}

// Tree is a checked-out commit of a repository.
type Tree struct {
	RepoURL string
	Dir     string
	Commit  *object.Commit
}

// Trees checks out repositories at revisions. The hub backs it with its Git
// mirrors.
type Trees interface {
	Tree(ctx context.Context, repoURL, revision string) (*Tree, error)
}

// App is a discovered, rendered application and the clusters it targets.
type App struct {
	Application *appspec.Application
	// File is the manifest the Application came from, "<repo>@<path>".
	File string
	Root string
	Tree *Tree
	// Rendered is the hub's render of the source: the files an artifact
	// must hold.
	Rendered *render.Result
	Clusters []string
}

// AppError is an application that could not be discovered or rendered. Its
// clusters keep their last good desired state.
type AppError struct {
	App  string
	Root string
	Err  error
}

// Result is one discovery pass over every root.
type Result struct {
	Apps []*App
	// Errors are per application: other applications are unaffected.
	Errors []AppError
	// RootErrors are roots that could not be read at all; nothing they
	// published before may be deleted while they fail.
	RootErrors map[string]error
}

// KubeVersion is the Kubernetes version the hub renders with; agents
// re-render with their cluster's real version.
const KubeVersion = "v1.37.2"

// Discover runs discovery over roots for the registered clusters.
func Discover(ctx context.Context, roots []Root, clusters []appspec.Cluster, trees Trees) *Result {
	res := &Result{RootErrors: map[string]error{}}
	for _, root := range roots {
		d := &walker{root: root, clusters: clusters, trees: trees, res: res, visited: map[string]bool{}}
		if err := d.walkRoot(ctx); err != nil {
			res.RootErrors[root.Name] = err
		}
	}
	markConflicts(res)
	sort.Slice(res.Apps, func(i, j int) bool {
		return res.Apps[i].Application.Metadata.Name < res.Apps[j].Application.Metadata.Name
	})
	return res
}

type walker struct {
	root     Root
	clusters []appspec.Cluster
	trees    Trees
	res      *Result
	// visited holds "<repo>@<commit>:<path>" of every source whose
	// Applications were read, so app-of-apps cycles end.
	visited map[string]bool
}

func (w *walker) walkRoot(ctx context.Context) error {
	tree, err := w.trees.Tree(ctx, w.root.RepoURL, w.root.Revision)
	if err != nil {
		return fmt.Errorf("root %s: %w", w.root.Name, err)
	}
	rendered, err := render.Render(ctx, render.Request{Root: tree.Dir, Path: w.root.Path, KubeVersion: KubeVersion})
	if err != nil {
		return fmt.Errorf("root %s (%s@%s): %w", w.root.Name, w.root.RepoURL, short(tree.Commit), err)
	}
	w.visited[sourceKey(tree, w.root.Path)] = true
	return w.readApplications(ctx, tree, rendered)
}

// readApplications decodes the Argo CD objects of a render and follows each
// Application. A malformed Application is an error of that application
// alone; a malformed ApplicationSet is one of the set.
func (w *walker) readApplications(ctx context.Context, tree *Tree, rendered *render.Result) error {
	for _, m := range rendered.Manifests {
		obj := m.Object
		if !appspec.IsArgoKind(obj.GetAPIVersion(), obj.GetKind()) {
			continue
		}
		file := fmt.Sprintf("%s@%s: %s", tree.RepoURL, short(tree.Commit), m.Source)
		data, err := json.Marshal(obj.Object)
		if err != nil {
			return err
		}
		switch obj.GetKind() {
		case appspec.KindApplication:
			app, err := appspec.DecodeApplication(file, data)
			if err != nil {
				w.fail(obj.GetName(), err)
				continue
			}
			w.follow(ctx, app, file)
		case appspec.KindApplicationSet:
			set, err := appspec.DecodeApplicationSet(file, data)
			if err == nil {
				var apps []*appspec.Application
				if apps, err = set.Expand(w.clusters); err == nil {
					for _, app := range apps {
						w.follow(ctx, app, file)
					}
					continue
				}
			}
			w.fail("applicationset/"+obj.GetName(), fmt.Errorf("%s: %w", file, err))
		}
	}
	return nil
}

// follow renders an Application's source, records it, and recurses when the
// source yields Applications itself (app-of-apps).
func (w *walker) follow(ctx context.Context, app *appspec.Application, file string) {
	name := app.Metadata.Name
	src := app.Spec.Source
	tree, err := w.trees.Tree(ctx, src.RepoURL, src.TargetRevision)
	if err != nil {
		w.fail(name, fmt.Errorf("%s: Application %q: spec.source: %w", file, name, err))
		return
	}
	spec, err := app.RenderSpec()
	if err != nil {
		w.fail(name, fmt.Errorf("%s: %w", file, err))
		return
	}
	rendered, err := render.Render(ctx, render.Request{
		Root: tree.Dir, Path: src.Path, Spec: spec, ReleaseName: name,
		Namespace: app.Spec.Destination.Namespace, KubeVersion: KubeVersion,
	})
	if err != nil {
		w.fail(name, fmt.Errorf("application %q (%s@%s): %w", name, src.RepoURL, short(tree.Commit), err))
		return
	}
	w.res.Apps = append(w.res.Apps, &App{
		Application: app, File: file, Root: w.root.Name, Tree: tree, Rendered: rendered,
		Clusters: w.targets(app),
	})
	key := sourceKey(tree, src.Path)
	if w.visited[key] {
		return
	}
	w.visited[key] = true
	_ = w.readApplications(ctx, tree, rendered)
}

// targets resolves the clusters an Application goes to (docs/targeting.md).
func (w *walker) targets(app *appspec.Application) []string {
	var selector labels.Selector
	switch {
	case app.Metadata.Annotations[appspec.ClustersAnnotation] != "":
		// Validate refused a selector that does not parse.
		selector, _ = appspec.ParseSelector(app.Metadata.Annotations[appspec.ClustersAnnotation])
	case app.Spec.Destination.Name != "":
		for _, c := range w.clusters {
			if c.Name == app.Spec.Destination.Name {
				return []string{c.Name}
			}
		}
		return nil
	default:
		selector = w.root.Clusters
	}
	var out []string
	for _, c := range w.clusters {
		if selector != nil && selector.Matches(labels.Set(c.Labels)) {
			out = append(out, c.Name)
		}
	}
	slices.Sort(out)
	return out
}

func (w *walker) fail(app string, err error) {
	w.res.Errors = append(w.res.Errors, AppError{App: app, Root: w.root.Name, Err: err})
}

// markConflicts turns two definitions of one application name for the same
// cluster into an error for that name: neither wins silently.
func markConflicts(res *Result) {
	owners := map[string]*App{}
	conflicted := map[string]bool{}
	for _, a := range res.Apps {
		for _, c := range a.Clusters {
			key := c + "/" + a.Application.Metadata.Name
			if other, ok := owners[key]; ok && other != a {
				conflicted[a.Application.Metadata.Name] = true
				res.Errors = append(res.Errors, AppError{App: a.Application.Metadata.Name, Root: a.Root,
					Err: fmt.Errorf("application %q is defined twice for cluster %s: in %s and in %s", a.Application.Metadata.Name, c, other.File, a.File)})
			}
			owners[key] = a
		}
	}
	if len(conflicted) == 0 {
		return
	}
	res.Apps = slices.DeleteFunc(res.Apps, func(a *App) bool { return conflicted[a.Application.Metadata.Name] })
}

func sourceKey(tree *Tree, path string) string {
	return tree.RepoURL + "@" + tree.Commit.Hash.String() + ":" + path
}

func short(c *object.Commit) string { return c.Hash.String()[:8] }
