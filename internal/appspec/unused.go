package appspec

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// all accepts a field and everything under it.
const all = "*"

// sourceFields are the fields of a source Flotilla acts on.
var sourceFields = map[string]any{
	"repoURL": all, "path": all, "targetRevision": all, "chart": all, "ref": all, "plugin": all,
	"helm": map[string]any{
		"valueFiles": all, "values": all, "valuesObject": all, "parameters": all, "fileParameters": all,
		"releaseName": all, "ignoreMissingValueFiles": all, "skipCrds": all, "passCredentials": all,
		"kubeVersion": all, "apiVersions": all, "namespace": all, "version": all,
	},
	"kustomize": map[string]any{
		"namePrefix": all, "nameSuffix": all, "images": all, "commonLabels": all, "commonAnnotations": all,
		"forceCommonLabels": all, "forceCommonAnnotations": all, "namespace": all, "replicas": all,
		"patches": all, "components": all, "ignoreMissingComponents": all,
	},
	"directory": map[string]any{"recurse": all, "include": all, "exclude": all, "jsonnet": all},
}

// applicationFields are the fields of an Application Flotilla acts on.
// metadata and status are Kubernetes' and Argo CD's own.
var applicationFields = map[string]any{
	"apiVersion": all, "kind": all, "metadata": all, "status": all,
	"spec": map[string]any{
		"project": all, "source": sourceFields, "sources": sourceFields,
		"destination":          map[string]any{"server": all, "name": all, "namespace": all},
		"ignoreDifferences":    all,
		"revisionHistoryLimit": all,
		"syncPolicy": map[string]any{
			"automated":                map[string]any{"enabled": all, "prune": all, "selfHeal": all, "allowEmpty": all},
			"syncOptions":              all,
			"retry":                    all,
			"managedNamespaceMetadata": all,
		},
	},
}

// unusedFields lists the fields of an object that known does not name,
// as dotted paths ("spec.info", "spec.sources[1].helm.valuesTemplate").
func unusedFields(object []byte, known map[string]any) []string {
	var tree any
	if json.Unmarshal(object, &tree) != nil {
		return nil
	}
	var out []string
	walkUnused("", tree, known, &out)
	slices.Sort(out)
	return out
}

func walkUnused(path string, node any, known any, out *[]string) {
	fields, ok := known.(map[string]any)
	if !ok {
		return // all
	}
	switch n := node.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(n)) {
			sub, ok := fields[k]
			field := strings.TrimPrefix(path+"."+k, ".")
			if !ok {
				*out = append(*out, field)
				continue
			}
			walkUnused(field, n[k], sub, out)
		}
	case []any:
		for i, item := range n {
			walkUnused(fmt.Sprintf("%s[%d]", path, i), item, known, out)
		}
	}
}

// fieldWarnings turns unused fields into warnings.
func fieldWarnings(fields []string) []string {
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		out = append(out, f+" is not acted on by Flotilla")
	}
	return out
}

// generatorFields are the fields of a generator Flotilla acts on; matrix
// and merge nest generators.
var generatorFields = func() map[string]any {
	g := map[string]any{
		"selector": all,
		"list":     map[string]any{"elements": all, "template": all},
		"clusters": map[string]any{"selector": all, "values": all, "template": all},
		"git": map[string]any{"repoURL": all, "revision": all, "directories": all, "files": all, "values": all,
			"pathParamPrefix": all, "template": all},
	}
	g["matrix"] = map[string]any{"generators": g, "template": all}
	g["merge"] = map[string]any{"generators": g, "mergeKeys": all, "template": all}
	return g
}()

// applicationSetFields are the fields of an ApplicationSet Flotilla acts
// on; its template's are checked in each Application it generates.
var applicationSetFields = map[string]any{
	"apiVersion": all, "kind": all, "metadata": all, "status": all,
	"spec": map[string]any{
		"goTemplate": all, "goTemplateOptions": all, "generators": generatorFields,
		"template": all, "templatePatch": all,
		// deletionOrder (Reverse) is not implemented: reported.
		"strategy": map[string]any{"type": all, "rollingSync": all},
	},
}
