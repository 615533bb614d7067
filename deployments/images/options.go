package main

import (
	"flag"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Options say which images to build, for which platforms and where.
type Options struct {
	// Out is the OCI image layout to write. It is replaced whole, so no
	// blob of an earlier build lingers in it.
	Out string
	// Version tags the images, fills their version label and is stamped
	// into the binaries.
	Version string
	// Platforms are built for every image, one entry each in the image's
	// index.
	Platforms []v1.Platform
	// Licenses is the SPDX license expression of the images' label and
	// SBOM; empty leaves the label out and the SBOM says NOASSERTION.
	Licenses string
	// Images are the programs packaged, one image each.
	Images []ImageSpec
}

// ImageSpec is one program packaged as an image.
type ImageSpec struct {
	// Name is the binary's name in /usr/local/bin and the last element of
	// the image's repository.
	Name string
	// Package is the import path of the program's main package.
	Package string
	// Description fills the image's description label.
	Description string
	// VersionVar is the string variable that `-ldflags -X` sets to the
	// version; empty for a program that has none.
	VersionVar string
}

// Ref is the reference the image is tagged with in the layout.
func (s ImageSpec) Ref(version string) string {
	return repository + "/" + s.Name + ":" + version
}

// repository is where Flotilla's images are published.
const repository = "ghcr.io/flotilla-dev"

// FlotillaImages are the images Flotilla ships. The hub has no version
// variable yet, so only its labels, SBOM and tag carry the version.
var FlotillaImages = []ImageSpec{
	{
		Name:        "flotilla-hub",
		Package:     "github.com/flotilla-dev/flotilla/cmd/hub",
		Description: "Flotilla hub: watches Git and publishes signed desired state for every cluster of the fleet over NATS JetStream",
	},
	{
		Name:        "flotilla-agent",
		Package:     "github.com/flotilla-dev/flotilla/cmd/agent",
		Description: "Flotilla agent: pulls the desired state the hub signed for its cluster and applies it with server-side apply",
		VersionVar:  "github.com/flotilla-dev/flotilla/agent.Version",
	},
}

// DefaultOptions build every image for linux/amd64 and linux/arm64 at the
// Helm charts' appVersion.
func DefaultOptions() Options {
	return Options{
		Out:     "bin/images",
		Version: "0.1.0",
		// arm64 is ARMv8.0 (GOARM64's default), which is what the variant
		// v8 says to a runtime choosing from the index.
		Platforms: []v1.Platform{
			{OS: "linux", Architecture: "amd64"},
			{OS: "linux", Architecture: "arm64", Variant: "v8"},
		},
		Images: FlotillaImages,
	}
}

// BindFlags registers the options as command-line flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Out, "out", o.Out, "OCI image layout to write (replaced whole)")
	fs.StringVar(&o.Version, "version", o.Version, "version: the images' tag and label, stamped into the binaries")
	fs.StringVar(&o.Licenses, "licenses", o.Licenses, "SPDX license expression of the images; empty leaves it out")
	fs.Func("platforms", "comma-separated platforms to build (default linux/amd64,linux/arm64/v8)", func(v string) error {
		o.Platforms = nil
		for s := range strings.SplitSeq(v, ",") {
			p, err := v1.ParsePlatform(s)
			if err != nil {
				return fmt.Errorf("platform %q: %w", s, err)
			}
			o.Platforms = append(o.Platforms, *p)
		}
		return nil
	})
}
