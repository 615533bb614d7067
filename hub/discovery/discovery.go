package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/hub/charts"
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

// Charts reads charts from Helm repositories and OCI registries. The hub
// backs it with a charts.Fetcher.
type Charts interface {
	Chart(ctx context.Context, repoURL, name, version string) (*charts.Chart, error)
	Vendor(ctx context.Context, root, chartDir string) error
}

// Sources are where discovery reads applications' sources from.
type Sources struct {
	Trees  Trees
	Charts Charts
	// Renders keeps renders across passes; nil renders every source at
	// every pass.
	Renders *RenderCache
}

// App is a discovered, rendered application and the clusters it targets.
type App struct {
	Application *appspec.Application
	// File is the manifest the Application came from, "<repo>@<path>".
	File string
	Root string
	// Commit is what the application's desired state is published for:
	// its first Git source's commit, or for an application of charts
	// alone, the commit of its manifest.
	Commit *object.Commit
	// Sources are the application's sources, rendered, in order.
	Sources  []*Source
	Clusters []string
	// Project is the AppProject the application belongs to.
	Project *appspec.AppProject
}

// Source is one of an application's sources as the hub read it.
type Source struct {
	Spec *appspec.ApplicationSource
	// Dir holds the source's files: a checkout of its commit, or an
	// unpacked chart.
	Dir string
	// Path is the directory rendered, inside Dir (a chart's name for a
	// chart from a repository).
	Path string
	// Commit is a Git source's resolved commit; nil for a chart.
	Commit *object.Commit
	// Chart is a chart source's resolved chart; nil for Git.
	Chart *charts.Chart
	// Rendered is the hub's render of the source: the files an artifact
	// must hold. Nil for a source that only lends value files (ValuesOnly),
	// whose files are those others read (RefFiles).
	Rendered *render.Result
	// RefFiles are the files of this source others' value files read.
	RefFiles []string
	// repo is a Git source's repository as the hub mirrors it.
	repo string
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
	// Projects are the AppProjects found beside the Applications, by name.
	Projects map[string]*Project
}

// Project is an AppProject and the manifest it came from.
type Project struct {
	*appspec.AppProject
	File string
	// Conflict names a second, different definition of the same name:
	// no application may use the project then.
	Conflict string
}

// KubeVersion is the Kubernetes version the hub renders with; agents
// re-render with their cluster's real version.
const KubeVersion = "v1.37.2"

// Discover runs discovery over roots for the registered clusters.
func Discover(ctx context.Context, roots []Root, clusters []appspec.Cluster, sources Sources) *Result {
	res := &Result{RootErrors: map[string]error{}, Projects: map[string]*Project{}}
	for _, root := range roots {
		d := &walker{root: root, clusters: clusters, sources: sources, res: res, visited: map[string]bool{}}
		if err := d.walkRoot(ctx); err != nil {
			res.RootErrors[root.Name] = err
		}
	}
	sources.Renders.endPass()
	markConflicts(res)
	enforceProjects(res)
	sort.Slice(res.Apps, func(i, j int) bool {
		return res.Apps[i].Application.Metadata.Name < res.Apps[j].Application.Metadata.Name
	})
	return res
}

type walker struct {
	root     Root
	clusters []appspec.Cluster
	sources  Sources
	res      *Result
	// visited holds "<repo>@<commit>:<path>" of every source whose
	// Applications were read, so app-of-apps cycles end.
	visited map[string]bool
}

func (w *walker) walkRoot(ctx context.Context) error {
	tree, err := w.sources.Trees.Tree(ctx, w.root.RepoURL, w.root.Revision)
	if err != nil {
		return fmt.Errorf("root %s: %w", w.root.Name, err)
	}
	rendered, err := w.sources.Renders.render(ctx, render.Request{Root: tree.Dir, Path: w.root.Path, KubeVersion: KubeVersion})
	if err != nil {
		return fmt.Errorf("root %s (%s@%s): %w", w.root.Name, w.root.RepoURL, short(tree.Commit), err)
	}
	w.visited[tree.RepoURL+"@"+tree.Commit.Hash.String()+":"+w.root.Path] = true
	w.readApplications(ctx, origin{label: tree.RepoURL + "@" + short(tree.Commit), commit: tree.Commit}, rendered.Manifests)
	return nil
}

// origin is where manifests came from: a label for errors ("<repo>@<commit>"
// or "<repo>/<chart>:<version>") and the commit an Application found there
// is published for when its own sources are charts alone.
type origin struct {
	label  string
	commit *object.Commit
}

// readApplications decodes the Argo CD objects of a render and follows each
// Application. A malformed Application is an error of that application
// alone; a malformed ApplicationSet is one of the set.
func (w *walker) readApplications(ctx context.Context, from origin, manifests []render.Manifest) {
	for _, m := range manifests {
		obj := m.Object
		if !appspec.IsArgoKind(obj.GetAPIVersion(), obj.GetKind()) {
			continue
		}
		file := fmt.Sprintf("%s: %s", from.label, m.Source)
		data, err := json.Marshal(obj.Object)
		if err != nil {
			w.fail(obj.GetName(), fmt.Errorf("%s: %w", file, err))
			continue
		}
		switch obj.GetKind() {
		case appspec.KindAppProject:
			w.addProject(file, data)
		case appspec.KindApplication:
			app, err := appspec.DecodeApplication(file, data)
			if err != nil {
				w.fail(obj.GetName(), err)
				continue
			}
			w.follow(ctx, app, file, from)
		case appspec.KindApplicationSet:
			set, err := appspec.DecodeApplicationSet(file, data)
			if err == nil {
				var apps []*appspec.Application
				if apps, err = expandBounded(ctx, set, w.clusters, checkouts{w.sources.Trees}); err == nil {
					for _, app := range apps {
						w.follow(ctx, app, file, from)
					}
					continue
				}
			}
			w.fail("applicationset/"+obj.GetName(), fmt.Errorf("%s: %w", file, err))
		}
	}
}

// follow reads and renders an Application's sources, records it, and
// recurses into the Applications its sources render (app-of-apps).
func (w *walker) follow(ctx context.Context, app *appspec.Application, file string, from origin) {
	name := app.Metadata.Name
	fail := func(err error) { w.fail(name, fmt.Errorf("%s: Application %q: %w", file, name, err)) }
	specs := app.AppSources()
	sources := make([]*Source, len(specs))
	refs := map[string]string{}
	for i, spec := range specs {
		src, err := w.read(ctx, spec)
		if err != nil {
			fail(fmt.Errorf("%s: %w", app.SourceField(i), err))
			return
		}
		sources[i] = src
		if spec.Ref != "" {
			refs[spec.Ref] = src.Dir
		}
	}
	targets, err := w.targets(app)
	if err != nil {
		fail(err)
		return
	}
	a := &App{Application: app, File: file, Root: w.root.Name, Commit: from.commit, Sources: sources, Clusters: targets}
	for _, src := range sources {
		if src.Commit != nil {
			a.Commit = src.Commit
			break
		}
	}
	var follow []*Source
	for i, src := range sources {
		if src.Spec.ValuesOnly() {
			continue
		}
		spec, err := src.Spec.RenderSpec()
		if err != nil {
			fail(fmt.Errorf("%s.%w", app.SourceField(i), err))
			return
		}
		rendered, err := w.sources.Renders.render(ctx, render.Request{
			Root: src.Dir, Path: src.Path, Spec: spec, ReleaseName: name, Refs: refs,
			Namespace: app.Spec.Destination.Namespace, KubeVersion: KubeVersion,
		})
		if err != nil {
			w.fail(name, fmt.Errorf("application %q (%s): %w", name, src.label(), err))
			return
		}
		src.Rendered = rendered
		for ref, files := range rendered.RefFiles {
			for j, other := range specs {
				if other.Ref == ref {
					sources[j].RefFiles = append(sources[j].RefFiles, files...)
				}
			}
		}
		key := src.key() + ":" + src.Path
		if !w.visited[key] {
			w.visited[key] = true
			follow = append(follow, src)
		}
	}
	w.res.Apps = append(w.res.Apps, a)
	for _, src := range follow {
		w.readApplications(ctx, origin{label: src.label(), commit: a.Commit}, src.Rendered.Manifests)
	}
}

// read fetches a source: a chart from its repository, or a checkout of
// its Git commit, with a chart's missing dependencies vendored.
func (w *walker) read(ctx context.Context, spec *appspec.ApplicationSource) (*Source, error) {
	src := &Source{Spec: spec}
	if spec.IsChart() {
		if w.sources.Charts == nil {
			return nil, fmt.Errorf("charts from repositories are not configured")
		}
		ch, err := w.sources.Charts.Chart(ctx, spec.RepoURL, spec.Chart, spec.TargetRevision)
		if err != nil {
			return nil, err
		}
		src.Dir, src.Path, src.Chart = ch.Dir, ch.Name, ch
	} else {
		tree, err := w.sources.Trees.Tree(ctx, spec.RepoURL, spec.TargetRevision)
		if err != nil {
			return nil, err
		}
		src.Dir, src.Path, src.Commit, src.repo = tree.Dir, spec.Path, tree.Commit, tree.RepoURL
	}
	if spec.ValuesOnly() || w.sources.Charts == nil {
		return src, nil
	}
	rs, err := spec.RenderSpec()
	if err != nil {
		return nil, err
	}
	dir, err := render.ResolvePath(src.Dir, src.Path)
	if err != nil {
		return src, nil // the render names the path
	}
	if render.DetectKind(dir, rs) == render.KindHelm {
		if err := w.sources.Charts.Vendor(ctx, src.Dir, dir); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// key identifies the source's files: what a cycle of app-of-apps revisits.
func (s *Source) key() string {
	if s.Chart != nil {
		return s.label()
	}
	return s.repo + "@" + s.Commit.Hash.String()
}

// label names the source in errors.
func (s *Source) label() string {
	if s.Chart != nil {
		return fmt.Sprintf("%s/%s:%s", strings.TrimSuffix(s.Spec.RepoURL, "/"), s.Chart.Name, s.Chart.Version)
	}
	return s.Spec.RepoURL + "@" + short(s.Commit)
}

// expandTimeout bounds an ApplicationSet's expansion: its templates are
// outside input, and a Go template that calls itself twice recurses
// exponentially.
const expandTimeout = 30 * time.Second

// expanding holds the ApplicationSets whose expansion passed its deadline
// and still runs (templates take no context): while one does, the same
// set is refused at once rather than started again at every pass.
var expanding sync.Map

// expandBounded expands set within expandTimeout.
func expandBounded(ctx context.Context, set *appspec.ApplicationSet, clusters []appspec.Cluster, repos appspec.Repos) ([]*appspec.Application, error) {
	key := set.Metadata.Namespace + "/" + set.Metadata.Name
	if _, running := expanding.Load(key); running {
		return nil, fmt.Errorf("an earlier expansion of ApplicationSet %q passed its deadline and is still running", set.Metadata.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, expandTimeout)
	defer cancel()
	type result struct {
		apps []*appspec.Application
		err  error
	}
	done := make(chan result, 1)
	go func() {
		apps, err := set.Expand(ctx, clusters, repos)
		done <- result{apps, err}
	}()
	select {
	case r := <-done:
		return r.apps, r.err
	case <-ctx.Done():
		expanding.Store(key, true)
		go func() {
			<-done
			expanding.Delete(key)
		}()
		return nil, fmt.Errorf("expanding ApplicationSet %q did not finish within %s", set.Metadata.Name, expandTimeout)
	}
}

// checkouts give git generators the hub's checkouts of configured
// repositories.
type checkouts struct{ trees Trees }

func (c checkouts) Checkout(ctx context.Context, repoURL, revision string) (string, error) {
	if revision == "" {
		revision = "HEAD"
	}
	t, err := c.trees.Tree(ctx, repoURL, revision)
	if err != nil {
		return "", err
	}
	return t.Dir, nil
}

// addProject records an AppProject. A malformed one, or two different
// definitions of one name, fail the applications that use it.
func (w *walker) addProject(file string, data []byte) {
	p, err := appspec.DecodeAppProject(file, data)
	if err != nil {
		var bad *appspec.Error // names the project, when it has a name
		name := ""
		if errors.As(err, &bad) {
			name = bad.Name
		}
		w.res.Projects[name] = &Project{AppProject: &appspec.AppProject{Metadata: appspec.ObjectMeta{Name: name}}, File: file, Conflict: err.Error()}
		return
	}
	prev, ok := w.res.Projects[p.Metadata.Name]
	switch {
	case !ok:
		w.res.Projects[p.Metadata.Name] = &Project{AppProject: p, File: file}
	case prev.Conflict == "" && !reflect.DeepEqual(prev.Spec, p.Spec):
		prev.Conflict = fmt.Sprintf("AppProject %q is defined twice, differently: in %s and in %s", p.Metadata.Name, prev.File, file)
	}
}

// targets resolves the clusters an Application goes to (docs/targeting.md):
// the clusters annotation's selector; destination.name; a
// destination.server that a cluster registered as its URL; or, for the
// in-cluster server, the root's selector.
func (w *walker) targets(app *appspec.Application) ([]string, error) {
	var selector labels.Selector
	d := app.Spec.Destination
	switch {
	case app.Metadata.Annotations[appspec.ClustersAnnotation] != "":
		// Validate refused a selector that does not parse.
		selector, _ = appspec.ParseSelector(app.Metadata.Annotations[appspec.ClustersAnnotation])
	case d.Name != "":
		for _, c := range w.clusters {
			if c.Name == d.Name {
				return []string{c.Name}, nil
			}
		}
		return nil, nil
	case d.Server != "" && d.Server != appspec.InClusterServer:
		var known []string
		for _, c := range w.clusters {
			if c.KnownBy(d.Server) {
				known = append(known, c.Name)
			}
		}
		switch len(known) {
		case 0:
			return nil, fmt.Errorf("spec.destination.server: %q is not the server URL of a registered cluster (an agent registers its cluster's with --server-url)", d.Server)
		case 1:
			return known, nil
		default:
			return nil, fmt.Errorf("spec.destination.server: %q is registered by several clusters (%s): name one with destination.name", d.Server, strings.Join(known, ", "))
		}
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
	return out, nil
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

func short(c *object.Commit) string { return c.Hash.String()[:8] }

// enforceProjects checks every application against its AppProject, as
// Argo CD does before it syncs: the project exists, permits the
// Application's namespace, each source's repository, and each target
// cluster with the destination namespace. An application that breaks its
// project is an error naming the project, the field and the value; none
// of it is published. The kinds a project permits are enforced by the
// agents, which know each kind's scope.
func enforceProjects(res *Result) {
	var kept []*App
	for _, a := range res.Apps {
		p, err := projectOf(res.Projects, a)
		if err == nil {
			err = checkProject(p, a)
		}
		if err != nil {
			res.Errors = append(res.Errors, AppError{App: a.Application.Metadata.Name, Root: a.Root, Err: fmt.Errorf("%s: %w", a.File, err)})
			continue
		}
		a.Project = p
		kept = append(kept, a)
	}
	res.Apps = kept
}

func projectOf(projects map[string]*Project, a *App) (*appspec.AppProject, error) {
	name := a.Application.Spec.Project
	if name == "" {
		name = appspec.DefaultProject
	}
	p, ok := projects[name]
	switch {
	case !ok && name == appspec.DefaultProject:
		return appspec.PermissiveProject(), nil
	case !ok:
		return nil, projectError(a, name, "spec.project", "no AppProject %q is defined beside the Applications", name)
	case p.Conflict != "":
		return nil, projectError(a, name, "spec.project", "%s", p.Conflict)
	}
	return p.AppProject, nil
}

func checkProject(p *appspec.AppProject, a *App) error {
	app := a.Application
	name := p.Metadata.Name
	if !p.AppNamespacePermitted(app.Metadata.Namespace) {
		return projectError(a, name, "metadata.namespace", "namespace %q is not among the project's sourceNamespaces", app.Metadata.Namespace)
	}
	for i, src := range app.AppSources() {
		if !p.SourcePermitted(src.RepoURL) {
			return projectError(a, name, app.SourceField(i)+".repoURL", "repository %q is not permitted by the project's sourceRepos", src.RepoURL)
		}
	}
	d := app.Spec.Destination
	for _, cluster := range a.Clusters {
		if !p.DestinationPermitted(d.Server, cluster, d.Namespace) {
			return projectError(a, name, "spec.destination", "cluster %s, namespace %q is not among the project's destinations", cluster, d.Namespace)
		}
	}
	return nil
}

func projectError(a *App, project, field, format string, args ...any) error {
	return &appspec.Error{Kind: appspec.KindApplication, Name: a.Application.Metadata.Name, Field: field,
		Reason: fmt.Sprintf("AppProject %q: ", project) + fmt.Sprintf(format, args...)}
}
