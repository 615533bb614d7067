package discovery

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/render"
)

// RenderCache keeps renders from one discovery pass to the next. A render
// depends only on its request, and the directories it reads are
// content-addressed (a checkout by its commit, an unpacked chart by its
// digest), so a source that did not change is not rendered again: a
// commit that bumps one application re-renders that one. A failed render
// is not kept. Entries no pass used are dropped at the end of the next.
type RenderCache struct {
	mu      sync.Mutex
	entries map[string]*render.Result
	used    map[string]bool
}

// NewRenderCache returns an empty cache.
func NewRenderCache() *RenderCache {
	return &RenderCache{entries: map[string]*render.Result{}, used: map[string]bool{}}
}

// render renders req, or returns the result of the same request rendered
// before. c may be nil: then it always renders.
func (c *RenderCache) render(ctx context.Context, req render.Request) (*render.Result, error) {
	if c == nil {
		return render.Render(ctx, req)
	}
	key := requestKey(req)
	c.mu.Lock()
	res, ok := c.entries[key]
	c.used[key] = true
	c.mu.Unlock()
	if ok {
		return res, nil
	}
	res, err := render.Render(ctx, req)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.entries[key] = res
	c.mu.Unlock()
	return res, nil
}

// endPass drops the entries the pass did not use.
func (c *RenderCache) endPass() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.entries {
		if !c.used[key] {
			delete(c.entries, key)
		}
	}
	c.used = map[string]bool{}
}

// requestKey is everything a render depends on.
func requestKey(req render.Request) string {
	spec, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req.Spec)
	var refs []string
	for _, name := range slices.Sorted(maps.Keys(req.Refs)) {
		refs = append(refs, name+"="+req.Refs[name])
	}
	return strings.Join([]string{req.Root, req.Path, string(spec), req.ReleaseName, req.Namespace, req.KubeVersion,
		strings.Join(req.APIVersions, ","), strings.Join(refs, ",")}, "\x00")
}
