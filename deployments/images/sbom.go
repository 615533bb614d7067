package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// spdxMediaType is the media type, and the artifact type, of an SBOM.
const spdxMediaType types.MediaType = "application/spdx+json"

// SBOMSubject is what an SBOM describes: one platform image and what went
// into it.
type SBOMSubject struct {
	Spec     ImageSpec
	Version  string
	Platform v1.Platform
	// Digest is the platform image's manifest digest.
	Digest v1.Hash
	// Binary is the build info of the image's binary.
	Binary   *debug.BuildInfo
	Source   Source
	Licenses string
	// Debian are the packages files of the base layer come from.
	Debian []DebianPackage
}

// invalidIDChars are the characters an SPDX element id cannot have.
var invalidIDChars = regexp.MustCompile(`[^A-Za-z0-9.-]`)

// newSBOM is the SPDX 2.3 document of s: the image contains the Go module
// its binary was built from and the Debian packages; the module depends on
// the Go standard library and on every module its build info lists, at the
// version and with the checksum built. A Go checksum (h1:, the SHA-256 of
// the module's file list) is given as a SHA256 checksum, as syft and trivy
// do, so that the documents compare. It returns an error when two packages
// would have the same SPDX id.
func newSBOM(s SBOMSubject) (*v2_3.Document, error) {
	license := s.Licenses
	if license == "" {
		license = "NOASSERTION"
	}
	imageID := common.ElementID("Image-" + s.Spec.Name)
	image := &v2_3.Package{
		PackageName: s.Spec.Name, PackageSPDXIdentifier: imageID, PackageVersion: s.Version,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "CONTAINER",
		PackageDescription:     s.Spec.Description,
		PackageLicenseDeclared: license,
		PackageChecksums:       []common.Checksum{{Algorithm: common.SHA256, Value: s.Digest.Hex}},
		PackageExternalReferences: []*v2_3.PackageExternalReference{purlRef(packageurl.NewPackageURL(packageurl.TypeOCI, "", s.Spec.Name, s.Digest.String(),
			packageurl.QualifiersFromMap(map[string]string{
				"arch": s.Platform.Architecture, "repository_url": repository + "/" + s.Spec.Name, "tag": s.Version,
			}), ""))},
	}
	mainModule := s.Binary.Main
	mainID := goModuleID(mainModule.Path)
	program := &v2_3.Package{
		PackageName: mainModule.Path, PackageSPDXIdentifier: mainID, PackageVersion: mainModule.Version,
		PackageDownloadLocation: "git+" + sourceURL + "@" + s.Source.Revision, PrimaryPackagePurpose: "APPLICATION",
		PackageLicenseDeclared:    license,
		PackageExternalReferences: []*v2_3.PackageExternalReference{goPURL(mainModule.Path, mainModule.Version)},
	}
	stdlib := &v2_3.Package{
		PackageName: "stdlib", PackageSPDXIdentifier: "Go-stdlib", PackageVersion: s.Binary.GoVersion,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "LIBRARY",
		PackageExternalReferences: []*v2_3.PackageExternalReference{goPURL("stdlib", s.Binary.GoVersion)},
	}
	doc := &v2_3.Document{
		SPDXVersion: v2_3.Version, DataLicense: v2_3.DataLicense, SPDXIdentifier: "DOCUMENT",
		DocumentName: s.Spec.Ref(s.Version) + " " + s.Platform.String(),
		DocumentNamespace: fmt.Sprintf("%s/spdx/%s-%s-%s-%s", sourceURL, s.Spec.Name, s.Version,
			strings.ReplaceAll(s.Platform.String(), "/", "-"), s.Digest.Hex),
		CreationInfo: &v2_3.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "github.com/flotilla-dev/flotilla/deployments/images"}},
			Created:  s.Source.Time.UTC().Format(time.RFC3339),
		},
		Packages: []*v2_3.Package{image, program, stdlib},
		Relationships: []*v2_3.Relationship{
			relationship("DOCUMENT", common.TypeRelationshipDescribe, imageID),
			relationship(imageID, common.TypeRelationshipContains, mainID),
			relationship(mainID, common.TypeRelationshipDependsOn, stdlib.PackageSPDXIdentifier),
		},
	}
	for _, dep := range s.Binary.Deps {
		switch r := dep.Replace; {
		case r != nil && r.Version == "":
			dep = &debug.Module{Path: dep.Path} // a directory: its code has no version
		case r != nil:
			dep = r // the code built is the replacement's
		}
		p := &v2_3.Package{
			PackageName: dep.Path, PackageSPDXIdentifier: goModuleID(dep.Path), PackageVersion: dep.Version,
			PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "LIBRARY",
			PackageExternalReferences: []*v2_3.PackageExternalReference{goPURL(dep.Path, dep.Version)},
		}
		if sum, ok := strings.CutPrefix(dep.Sum, "h1:"); ok {
			b, err := base64.StdEncoding.DecodeString(sum)
			if err != nil {
				return nil, fmt.Errorf("module %s: checksum %s: %w", dep.Path, dep.Sum, err)
			}
			p.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: hex.EncodeToString(b)}}
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, relationship(mainID, common.TypeRelationshipDependsOn, p.PackageSPDXIdentifier))
	}
	for _, deb := range s.Debian {
		p := &v2_3.Package{
			PackageName: deb.Name, PackageSPDXIdentifier: common.ElementID("Deb-" + invalidIDChars.ReplaceAllString(deb.Name, "-")),
			PackageVersion: deb.Version, PackageDownloadLocation: "NOASSERTION",
			PackageExternalReferences: []*v2_3.PackageExternalReference{purlRef(packageurl.NewPackageURL(packageurl.TypeDebian, "debian", deb.Name, deb.Version,
				packageurl.QualifiersFromMap(map[string]string{"arch": deb.Architecture, "distro": deb.Distro}), ""))},
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, relationship(imageID, common.TypeRelationshipContains, p.PackageSPDXIdentifier))
	}
	seen := map[common.ElementID]bool{}
	for _, p := range doc.Packages {
		if seen[p.PackageSPDXIdentifier] {
			return nil, fmt.Errorf("SBOM of %s: two packages have the SPDX id %s", s.Spec.Name, p.PackageSPDXIdentifier)
		}
		seen[p.PackageSPDXIdentifier] = true
	}
	return doc, nil
}

// encodeSBOM is the JSON of doc.
func encodeSBOM(doc *v2_3.Document) ([]byte, error) {
	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// goModuleID is the SPDX id of a Go module: modules of a build list have
// one version each, so the path names it.
func goModuleID(modulePath string) common.ElementID {
	return common.ElementID("Go-" + invalidIDChars.ReplaceAllString(modulePath, "-"))
}

// goPURL is the package URL of a Go module: pkg:golang/github.com/nats-io/nats.go@v1.55.0.
func goPURL(modulePath, version string) *v2_3.PackageExternalReference {
	namespace, name := path.Split(modulePath)
	return purlRef(packageurl.NewPackageURL(packageurl.TypeGolang, strings.TrimSuffix(namespace, "/"), name, version, nil, ""))
}

func purlRef(p *packageurl.PackageURL) *v2_3.PackageExternalReference {
	return &v2_3.PackageExternalReference{Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: p.ToString()}
}

func relationship(a common.ElementID, kind string, b common.ElementID) *v2_3.Relationship {
	return &v2_3.Relationship{RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: kind}
}
