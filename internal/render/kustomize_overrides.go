package render

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// kustomizationNames are the file names kustomize reads, in its order.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// overrideKustomization applies an Application's spec.source.kustomize to
// the kustomization in dir as Argo CD's `kustomize edit` calls apply them
// (set nameprefix, namesuffix, image, namespace, replicas; add label and
// annotation, --force when forced; patches and components appended), and
// returns a file system where that file reads as edited. Nothing is
// written to the repository.
func overrideKustomization(fs filesys.FileSystem, dir string, k *flotillav1.KustomizeSpec) (filesys.FileSystem, error) {
	if proto.Size(k) == 0 {
		return fs, nil
	}
	var file string
	for _, name := range kustomizationNames {
		if p := filepath.Join(dir, name); fs.Exists(p) {
			file = p
			break
		}
	}
	if file == "" {
		return nil, fmt.Errorf("spec.source.kustomize needs a kustomization file in the directory")
	}
	data, err := fs.ReadFile(file)
	if err != nil {
		return nil, err
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(file), err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	if k.GetNamePrefix() != "" {
		doc["namePrefix"] = k.GetNamePrefix()
	}
	if k.GetNameSuffix() != "" {
		doc["nameSuffix"] = k.GetNameSuffix()
	}
	if k.GetNamespace() != "" {
		doc["namespace"] = k.GetNamespace()
	}
	for _, img := range k.GetImages() {
		entry, err := parseImageOverride(img)
		if err != nil {
			return nil, fmt.Errorf("spec.source.kustomize.images: %w", err)
		}
		doc["images"] = upsert(doc["images"], "name", entry)
	}
	for _, r := range k.GetReplicas() {
		doc["replicas"] = upsert(doc["replicas"], "name", map[string]any{"name": r.GetName(), "count": r.GetCount()})
	}
	for field, values := range map[string]map[string]string{"commonLabels": k.GetCommonLabels(), "commonAnnotations": k.GetCommonAnnotations()} {
		force := map[string]bool{"commonLabels": k.GetForceCommonLabels(), "commonAnnotations": k.GetForceCommonAnnotations()}[field]
		merged, err := addKeys(doc[field], values, force, field)
		if err != nil {
			return nil, err
		}
		if merged != nil {
			doc[field] = merged
		}
	}
	for _, c := range k.GetComponents() {
		if !fs.Exists(filepath.Join(dir, filepath.FromSlash(c))) {
			if k.GetIgnoreMissingComponents() {
				continue
			}
			return nil, fmt.Errorf("spec.source.kustomize.components: %q does not exist", c)
		}
		list, _ := doc["components"].([]any)
		doc["components"] = append(list, c)
	}
	for _, p := range k.GetPatches() {
		list, _ := doc["patches"].([]any)
		doc["patches"] = append(list, patchEntry(p))
	}
	edited, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return &overlayFS{FileSystem: fs, path: file, data: edited}, nil
}

// parseImageOverride reads an image as `kustomize edit set image` does:
// [<name>=]<newName>[:<tag>][@<digest>]; without "<name>=", the name is
// the new name without its tag and digest.
func parseImageOverride(arg string) (map[string]any, error) {
	name, ref, named := strings.Cut(arg, "=")
	if !named {
		ref = arg
	}
	ref, digest, _ := strings.Cut(ref, "@")
	newName, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		newName, tag = ref[:i], ref[i+1:]
	}
	if !named {
		name = newName
	}
	if name == "" || newName == "" {
		return nil, fmt.Errorf("%q is not [<name>=]<image>[:<tag>][@<digest>]", arg)
	}
	entry := map[string]any{"name": name}
	if newName != name {
		entry["newName"] = newName
	}
	if tag != "" {
		entry["newTag"] = tag
	}
	if digest != "" {
		entry["digest"] = digest
	}
	return entry, nil
}

// upsert replaces the entry of list whose key matches entry's, or appends
// entry.
func upsert(list any, key string, entry map[string]any) []any {
	items, _ := list.([]any)
	for i, item := range items {
		if m, ok := item.(map[string]any); ok && m[key] == entry[key] {
			items[i] = entry
			return items
		}
	}
	return append(items, entry)
}

// addKeys adds labels or annotations; a key already there is an error
// unless forced, as `kustomize edit add` without --force says.
func addKeys(existing any, values map[string]string, force bool, field string) (map[string]any, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := map[string]any{}
	if m, ok := existing.(map[string]any); ok {
		maps.Copy(out, m)
	}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if _, ok := out[k]; ok && !force {
			return nil, fmt.Errorf("spec.source.kustomize.%s: %s is already set in the kustomization; set force%s to override it", field, k, strings.ToUpper(field[:1])+field[1:])
		}
		out[k] = values[k]
	}
	return out, nil
}

func patchEntry(p *flotillav1.KustomizePatch) map[string]any {
	entry := map[string]any{}
	if p.GetPath() != "" {
		entry["path"] = p.GetPath()
	}
	if p.GetPatch() != "" {
		entry["patch"] = p.GetPatch()
	}
	if t := p.GetTarget(); t != nil {
		target := map[string]any{}
		for k, v := range map[string]string{"group": t.GetGroup(), "version": t.GetVersion(), "kind": t.GetKind(), "name": t.GetName(),
			"namespace": t.GetNamespace(), "labelSelector": t.GetLabelSelector(), "annotationSelector": t.GetAnnotationSelector()} {
			if v != "" {
				target[k] = v
			}
		}
		entry["target"] = target
	}
	if len(p.GetOptions()) > 0 {
		options := map[string]any{}
		for k, v := range p.GetOptions() {
			options[k] = v
		}
		entry["options"] = options
	}
	return entry
}

// overlayFS reads one file as given and every other from the file system.
// That file is read from the file system too, so a recording file system
// beneath records it: the artifact holds the file as in Git, and the
// agent applies the same overrides.
type overlayFS struct {
	filesys.FileSystem
	path string
	data []byte
}

func (o *overlayFS) ReadFile(path string) ([]byte, error) {
	data, err := o.FileSystem.ReadFile(path)
	if err != nil || filepath.Clean(path) != o.path {
		return data, err
	}
	return append([]byte(nil), o.data...), nil
}
