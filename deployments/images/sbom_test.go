package main

import (
	"runtime/debug"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestNewSBOM follows modules and Debian packages of a build into the SPDX
// packages that describe them.
func TestNewSBOM(t *testing.T) {
	// sum is a Go checksum; sumHex is its SHA-256 in hex, as SPDX has it.
	const sum = "h1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	const sumHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	type pkg struct{ Version, PURL, Checksum string }
	tests := []struct {
		name    string
		deps    []*debug.Module
		debian  []DebianPackage
		want    map[string]pkg // by package name
		wantErr bool
	}{
		{
			name: "a module is listed at its version, with its checksum",
			deps: []*debug.Module{{Path: "github.com/nats-io/nats.go", Version: "v1.55.0", Sum: sum}},
			want: map[string]pkg{
				"github.com/nats-io/nats.go": {"v1.55.0", "pkg:golang/github.com/nats-io/nats.go@v1.55.0", sumHex},
				"github.com/flotilla-dev/flotilla": {"v0.0.0-20261207010645-9bdc0448c497",
					"pkg:golang/github.com/flotilla-dev/flotilla@v0.0.0-20261207010645-9bdc0448c497", ""},
				"stdlib": {"go1.26.8", "pkg:golang/stdlib@go1.26.8", ""},
			},
		},
		{
			name: "a replaced module is listed as its replacement, whose code was built",
			deps: []*debug.Module{{Path: "example.com/old", Version: "v1.0.0", Sum: "h1:x",
				Replace: &debug.Module{Path: "example.com/fork", Version: "v1.0.1", Sum: sum}}},
			want: map[string]pkg{"example.com/fork": {"v1.0.1", "pkg:golang/example.com/fork@v1.0.1", sumHex}},
		},
		{
			name: "a module replaced by a directory has no version",
			deps: []*debug.Module{{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "../old"}}},
			want: map[string]pkg{"example.com/old": {"", "pkg:golang/example.com/old", ""}},
		},
		{
			name: "a +incompatible version is escaped in the purl",
			deps: []*debug.Module{{Path: "github.com/evanphx/json-patch", Version: "v5.9.11+incompatible", Sum: sum}},
			want: map[string]pkg{"github.com/evanphx/json-patch": {"v5.9.11+incompatible",
				"pkg:golang/github.com/evanphx/json-patch@v5.9.11%2Bincompatible", sumHex}},
		},
		{
			name:   "a Debian package names its architecture and release",
			debian: []DebianPackage{{Name: "ca-certificates", Version: "20230311+deb12u1", Architecture: "all", Distro: "debian-12"}},
			want: map[string]pkg{"ca-certificates": {"20230311+deb12u1",
				"pkg:deb/debian/ca-certificates@20230311%2Bdeb12u1?arch=all&distro=debian-12", ""}},
		},
		{
			name: "two modules whose SPDX ids would be the same are an error",
			deps: []*debug.Module{
				{Path: "example.com/a_b", Version: "v1.0.0"},
				{Path: "example.com/a-b", Version: "v1.0.0"},
			},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := newSBOM(SBOMSubject{
				Spec: FlotillaImages[1], Version: "0.1.0", Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
				Digest: v1.Hash{Algorithm: "sha256", Hex: sumHex},
				Binary: &debug.BuildInfo{GoVersion: "go1.26.8", Deps: tc.deps,
					Main: debug.Module{Path: "github.com/flotilla-dev/flotilla", Version: "v0.0.0-20261207010645-9bdc0448c497"}},
				Source: Source{Revision: "9bdc0448c497690bc297a6e90d87452b079016d6", Time: time.Date(2026, 12, 7, 1, 6, 45, 0, time.UTC)},
				Debian: tc.debian,
			})
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]pkg{}
			for _, p := range doc.Packages {
				if _, ok := tc.want[p.PackageName]; !ok {
					continue
				}
				var g pkg
				g.Version, g.PURL = p.PackageVersion, p.PackageExternalReferences[0].Locator
				if len(p.PackageChecksums) > 0 {
					g.Checksum = p.PackageChecksums[0].Value
				}
				got[p.PackageName] = g
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("packages (-want +got):\n%s", diff)
			}
		})
	}
}
