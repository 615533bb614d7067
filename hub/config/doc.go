// Package config reads the hub's YAML configuration file, applies defaults
// and validates it, naming the field of every error. Secrets are referenced
// by file or environment variable, never written in the file itself.
package config
