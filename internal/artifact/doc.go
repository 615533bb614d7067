// Package artifact packs the files an application needs into a deterministic
// tar.gz whose sha256 digest names it, and unpacks one safely: sizes are
// bounded and no entry may leave the destination directory.
package artifact
