// Package diff renders how an object would change as a unified diff of
// its YAML, for `flotilla app diff`. Bookkeeping fields are left out and
// Secret values are masked, so a diff never carries a secret.
package diff
