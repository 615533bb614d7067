// Package version reports the build's version, stamped by the linker.
package version

// Version is set with -ldflags "-X github.com/flotilla-dev/flotilla/internal/version.Version=...".
var Version = "dev"
