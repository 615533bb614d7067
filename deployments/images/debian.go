package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// DebianPackage is an installed Debian package that files of the base layer
// come from.
type DebianPackage struct {
	Name         string
	Version      string
	Architecture string
	// Distro is the release, as package URLs name it: debian-12.
	Distro string
	// Files are the paths the package installed.
	Files []string
}

// debianPackage asks dpkg about an installed package.
func debianPackage(ctx context.Context, name string) (DebianPackage, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${db:Status-Status}\t${Version}\t${Architecture}", name).Output()
	if err != nil {
		return DebianPackage{}, fmt.Errorf("%s: dpkg-query failed (apt-get install %s): %w", name, name, err)
	}
	fields := strings.Split(string(out), "\t")
	if len(fields) != 3 || fields[0] != "installed" {
		return DebianPackage{}, fmt.Errorf("%s is not installed (apt-get install %s)", name, name)
	}
	list, err := exec.CommandContext(ctx, "dpkg-query", "-L", name).Output()
	if err != nil {
		return DebianPackage{}, fmt.Errorf("%s: dpkg-query -L failed: %w", name, err)
	}
	distro, err := debianRelease()
	if err != nil {
		return DebianPackage{}, err
	}
	return DebianPackage{Name: name, Version: fields[1], Architecture: fields[2], Distro: distro,
		Files: strings.Split(strings.TrimSpace(string(list)), "\n")}, nil
}

// debianRelease reads ID and VERSION_ID from /etc/os-release.
func debianRelease() (string, error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", err
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if unquoted, err := strconv.Unquote(value); err == nil {
			value = unquoted
		}
		fields[key] = value
	}
	if fields["ID"] == "" || fields["VERSION_ID"] == "" {
		return "", fmt.Errorf("/etc/os-release names no ID and VERSION_ID")
	}
	return fields["ID"] + "-" + fields["VERSION_ID"], nil
}

// caBundle is /etc/ssl/certs/ca-certificates.crt as update-ca-certificates
// makes it from the ca-certificates package alone: its certificates
// concatenated in the order of their paths. The machine's own bundle is not
// copied, since it also holds whatever CAs its administrator added.
func caBundle(pkg DebianPackage) ([]byte, error) {
	var bundle []byte
	for _, f := range slices.Sorted(slices.Values(pkg.Files)) {
		if !strings.HasPrefix(f, "/usr/share/ca-certificates/") || !strings.HasSuffix(f, ".crt") {
			continue
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		bundle = append(bundle, pem...)
		if !bytes.HasSuffix(bundle, []byte("\n")) {
			bundle = append(bundle, '\n')
		}
	}
	if len(bundle) == 0 {
		return nil, fmt.Errorf("%s %s ships no certificate under /usr/share/ca-certificates", pkg.Name, pkg.Version)
	}
	return bundle, nil
}
