// Package flux measures fluxcd/pkg/ssa, the state of the art in
// server-side apply engines, on Flotilla's apply benchmark objects.
package flux
