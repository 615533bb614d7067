package render

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// renderDirectory reads every .yaml, .yml and .json file in dir (and below
// with directory.recurse), and evaluates every .jsonnet file, filtered by
// include and exclude globs, as Argo CD's directory sources do.
func renderDirectory(req Request, dir string) (*Result, error) {
	spec := req.Spec.GetDirectory()
	res := &Result{}
	size := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := relative(dir, p)
		if d.IsDir() {
			if p != dir && (!spec.GetRecurse() || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		isJsonnet := strings.HasSuffix(d.Name(), ".jsonnet")
		if (!isManifestFile(d.Name()) && !isJsonnet) || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if inc := spec.GetInclude(); inc != "" && !matchAny(inc, rel) {
			return nil
		}
		if exc := spec.GetExclude(); exc != "" && matchAny(exc, rel) {
			return nil
		}
		source := relative(req.Root, p)
		if isJsonnet {
			objs, files, err := evaluateJsonnet(req, dir, p)
			if err != nil {
				return &Error{Path: req.Path, File: source, Reason: "jsonnet", Err: err}
			}
			res.Files = append(res.Files, files...)
			for _, o := range objs {
				res.Manifests = append(res.Manifests, Manifest{Object: o, Source: source})
			}
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if size += len(data); size > maxRenderSize {
			return &Error{Path: req.Path, File: source, Reason: fmt.Sprintf("the directory's manifests are larger than %d MiB", maxRenderSize>>20)}
		}
		objs, err := Decode(data)
		if err != nil {
			return &Error{Path: req.Path, File: source, Reason: "invalid manifest", Err: err}
		}
		res.Files = append(res.Files, source)
		for _, o := range objs {
			res.Manifests = append(res.Manifests, Manifest{Object: o, Source: source})
		}
		return nil
	})
	if err != nil {
		if _, ok := err.(*Error); ok {
			return nil, err
		}
		return nil, &Error{Path: req.Path, Reason: "read directory", Err: err}
	}
	return res, nil
}

func isManifestFile(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// matchAny matches a path against Argo CD's include/exclude pattern: a glob,
// or a {a,b} list of globs, tried on the path relative to the application
// directory and on the file name.
func matchAny(pattern, rel string) bool {
	patterns := []string{pattern}
	if strings.HasPrefix(pattern, "{") && strings.HasSuffix(pattern, "}") {
		patterns = strings.Split(pattern[1:len(pattern)-1], ",")
	}
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
		if ok, _ := path.Match(p, path.Base(rel)); ok {
			return true
		}
	}
	return false
}
