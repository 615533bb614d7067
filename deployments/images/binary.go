package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// goEnvs is the Go environment of each platform an image can be built for:
// each architecture's baseline, so that the binary runs on every CPU the
// platform stands for (a GOAMD64=v3 binary would not).
var goEnvs = map[string][]string{
	"linux/amd64":    {"GOOS=linux", "GOARCH=amd64", "GOAMD64=v1"},
	"linux/arm64/v8": {"GOOS=linux", "GOARCH=arm64", "GOARM64=v8.0"},
}

// Binary is a program built for one platform.
type Binary struct {
	Path string
	Info *debug.BuildInfo
}

// buildBinary builds spec's program for platform into dir: static
// (CGO_ENABLED=0), with -trimpath and without symbol tables, so the same
// source gives the same bytes on any machine, and with the VCS information
// that the image's labels are read from. GOFLAGS is cleared: a developer's
// flags (tags, -race) do not reach a release image.
func buildBinary(ctx context.Context, spec ImageSpec, platform v1.Platform, version, dir string) (Binary, error) {
	env, ok := goEnvs[platform.String()]
	if !ok {
		return Binary{}, fmt.Errorf("%s: platform %s is not supported (linux/amd64, linux/arm64/v8)", spec.Name, platform)
	}
	out := filepath.Join(dir, strings.ReplaceAll(platform.String(), "/", "-"), spec.Name)
	ldflags := "-s -w"
	if spec.VersionVar != "" {
		ldflags += " -X " + spec.VersionVar + "=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=true", "-ldflags", ldflags, "-o", out, spec.Package)
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Binary{}, fmt.Errorf("%s: go build for %s failed: %w\n%s", spec.Name, platform, err, stderr.Bytes())
	}
	info, err := buildinfo.ReadFile(out)
	if err != nil {
		return Binary{}, fmt.Errorf("%s: build info: %w", spec.Name, err)
	}
	return Binary{Path: out, Info: info}, nil
}

// Source is the commit a binary was built from, as its build info says.
type Source struct {
	Revision string
	// Time is the commit's time: the images' creation time, so that a
	// rebuild of the commit gives the same digests.
	Time time.Time
	// Modified says the work tree had changes the commit does not have.
	Modified bool
}

// errNoVCS is returned by sourceOf for a binary built outside a Git
// checkout.
var errNoVCS = errors.New("the binary has no VCS information: build from a Git checkout")

// sourceOf reads the commit from a binary's build info; it returns errNoVCS
// when the build info has none.
func sourceOf(info *debug.BuildInfo) (Source, error) {
	var src Source
	var err error
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			src.Revision = s.Value
		case "vcs.time":
			src.Time, err = time.Parse(time.RFC3339, s.Value)
		case "vcs.modified":
			src.Modified, err = strconv.ParseBool(s.Value)
		}
		if err != nil {
			return Source{}, fmt.Errorf("build info %s: %w", s.Key, err)
		}
	}
	if src.Revision == "" || src.Time.IsZero() {
		return Source{}, errNoVCS
	}
	return src, nil
}
